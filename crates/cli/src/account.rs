//! The account commands both roles have, `create-account`, `login` and `logout`, and how
//! each one runs against either role's client. [`SellerCommand`](crate::SellerCommand) and
//! [`BuyerCommand`](crate::BuyerCommand) take them in with `#[command(flatten)]`, and each
//! words the help that names its role.

use agora_client::{ApiError, Client, ClientError, ErrorCode};
use clap::Subcommand;

use crate::args::{CreateAccountArgs, LoginArgs, parse_new_password};
use crate::output::Reply;
use crate::secret::PASSWORD;

/// The account commands, the same for both roles.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum AccountCommand {
    // No help here: it names the role, so each role's command enum gives it.
    CreateAccount(CreateAccountArgs),
    /// Log in; the session is saved so that later commands use it.
    Login(LoginArgs),
    /// Log out and forget the saved session.
    Logout,
}

/// Runs `command` against `client`, of either role, and returns its result, unprinted. A
/// login leaves its session in the client; saving it anywhere else is the caller's business.
pub(crate) async fn execute_account(
    client: &impl Client,
    command: AccountCommand,
) -> Result<Reply, ClientError> {
    Ok(match command {
        AccountCommand::CreateAccount(args) => {
            let password = PASSWORD.or_ask(args.password)?;
            // A typed password has not met the flag's parser yet.
            parse_new_password(&password).map_err(|rule| {
                ClientError::Refused(ApiError::new(ErrorCode::InvalidArgument, rule))
            })?;
            let name = args.name.as_deref().unwrap_or(&args.username);
            Reply::AccountCreated(client.create_account(&args.username, &password, name).await?)
        }
        AccountCommand::Login(args) => {
            let password = PASSWORD.or_ask(args.password)?;
            Reply::LoggedIn { session: client.login(&args.username, &password).await? }
        }
        AccountCommand::Logout => match client.logout().await {
            Ok(()) => Reply::LoggedOut { already_ended: false },
            // The server no longer knows the session: the user is logged out all the same.
            Err(e @ ClientError::Refused(_)) if e.needs_login() => {
                Reply::LoggedOut { already_ended: true }
            }
            Err(e) => return Err(e),
        },
    })
}
