//! Running commands: the session they start from, where their results go, and what a
//! login or logout leaves behind in the session file. Shared by one-shot commands and the
//! shell (which build on this module; it knows nothing of them), and by both roles
//! through [`Interface`].

use std::future::Future;
use std::io::Write;

use agora_client::{BuyerClient, Client, ClientError, SellerClient};
use agora_domain::Role;
use clap::{FromArgMatches, Subcommand};

use crate::buyer::{BuyerCommand, execute_buyer};
use crate::output::{Format, Reply, render_error, render_failure};
use crate::seller::{SellerCommand, execute_seller};
use crate::session::SessionStore;

/// What the one-shot runner and the shell need to know about a role.
pub(crate) trait Interface {
    const ROLE: Role;
    /// Where the role's server is when not told.
    const DEFAULT_SERVER: &'static str;
    type Client: Client;
    type Command: Subcommand + FromArgMatches;

    fn connect(addrs: Vec<String>) -> Self::Client;
    fn execute(
        client: &Self::Client,
        command: Self::Command,
    ) -> impl Future<Output = Result<Reply, ClientError>>;
}

/// The seller's side.
pub(crate) struct Seller;

impl Interface for Seller {
    const ROLE: Role = Role::Seller;
    const DEFAULT_SERVER: &'static str = crate::DEFAULT_SELLER_SERVER;
    type Client = SellerClient;
    type Command = SellerCommand;

    fn connect(addrs: Vec<String>) -> SellerClient {
        SellerClient::new(addrs)
    }
    async fn execute(client: &SellerClient, command: SellerCommand) -> Result<Reply, ClientError> {
        execute_seller(client, command).await
    }
}

/// The buyer's side.
pub(crate) struct Buyer;

impl Interface for Buyer {
    const ROLE: Role = Role::Buyer;
    const DEFAULT_SERVER: &'static str = crate::DEFAULT_BUYER_SERVER;
    type Client = BuyerClient;
    type Command = BuyerCommand;

    fn connect(addrs: Vec<String>) -> BuyerClient {
        BuyerClient::new(addrs)
    }
    async fn execute(client: &BuyerClient, command: BuyerCommand) -> Result<Reply, ClientError> {
        execute_buyer(client, command).await
    }
}

/// The global options, once parsed.
pub(crate) struct Options {
    pub(crate) servers: Vec<String>,
    pub(crate) format: Format,
    pub(crate) session: Option<String>,
}

/// A client, its session file and the output format.
pub(crate) struct Context<I: Interface> {
    pub(crate) client: I::Client,
    pub(crate) store: SessionStore,
    pub(crate) format: Format,
    /// In the shell the session also lives in memory, so failing to save it is no failure.
    pub(crate) in_shell: bool,
}

impl<I: Interface> Context<I> {
    /// Runs `command`, prints its result or error in `format`, and keeps the session file
    /// in step. Returns whether the command succeeded.
    pub(crate) async fn run_command(&self, command: I::Command, format: Format) -> bool {
        let before = self.client.session();
        match I::execute(&self.client, command).await {
            Ok(reply) => {
                print_out(&reply.render(format));
                self.remember(&reply, before.as_deref(), format)
            }
            Err(error) => {
                print_err(&render_error(&error, format, self.client.addrs()));
                if error.needs_login() {
                    if let Some(stale) = &before {
                        self.forget(stale);
                    }
                    if format == Format::Human {
                        print_err(&format!("hint: {}", self.login_hint()));
                    }
                }
                false
            }
        }
    }

    /// Saves a new session or removes an ended one; false if a new one could not be saved
    /// where the next command would find it.
    fn remember(&self, reply: &Reply, before: Option<&str>, format: Format) -> bool {
        match reply {
            Reply::LoggedIn { session } => match self.store.save(self.client.addrs(), session) {
                Ok(_) => true,
                Err(e) if self.in_shell => {
                    print_err(&format!(
                        "warning: the session lasts only as long as this shell: cannot save it: {e}"
                    ));
                    true
                }
                Err(e) => {
                    let message = format!(
                        "logged in, but cannot save the session ({e}); pass --session {session} \
                         or set AGORA_SESSION to use it"
                    );
                    print_err(&render_failure("session_file", &message, format));
                    false
                }
            },
            Reply::LoggedOut { .. } => {
                if let Some(ended) = before {
                    self.forget(ended);
                }
                true
            }
            _ => true,
        }
    }

    /// Removes `session`, which the servers of this client have ended, from the session
    /// file; what is saved for other servers stays.
    fn forget(&self, session: &str) {
        if let Err(e) = self.store.forget(self.client.addrs(), session) {
            print_err(&format!("warning: cannot remove the ended session's file: {e}"));
        }
    }

    fn login_hint(&self) -> String {
        if self.in_shell {
            "log in with `login --username NAME` (the password is asked for)".to_owned()
        } else {
            // The same --server: the session is that server's.
            let addrs = self.client.addrs();
            let server = if addrs.len() == 1 && addrs[0] == I::DEFAULT_SERVER {
                String::new()
            } else {
                format!(" --server {}", addrs.join(","))
            };
            format!(
                "log in with `agora {}{server} login --username NAME` (the password is asked \
                 for at a terminal; scripts set AGORA_PASSWORD)",
                I::ROLE
            )
        }
    }
}

/// Prints a result on stdout; a closed stdout (`| head`) is not worth a panic.
pub(crate) fn print_out(text: &str) {
    if !text.is_empty() {
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    }
}

/// Prints an error or warning on stderr.
pub(crate) fn print_err(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}
