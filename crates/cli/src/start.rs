//! Starting a role: `agora seller` or `agora buyer` runs one command, or the shell when
//! given none. The one place that knows both ways in; [`crate::run`] and [`crate::shell`]
//! below it never call back up.

use std::process::ExitCode;

use agora_client::Client;

use crate::output::render_failure;
use crate::run::{Context, Interface, Options, print_err};
use crate::session::SessionStore;
use crate::shell;

/// Runs one command, or the shell when there is none; the entry point of both roles.
pub(crate) fn run<I: Interface>(options: Options, command: Option<I::Command>) -> ExitCode {
    let format = options.format;
    // `--server a,,b` or an empty variable leaves empty entries; they name no server.
    let servers: Vec<String> =
        options.servers.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
    if servers.is_empty() {
        let message = "no server address: pass --server HOST:PORT";
        print_err(&render_failure("invalid_argument", message, format));
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        // One worker keeps connections serviced while the shell waits for a line.
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let message = format!("cannot start the async runtime: {e}");
            print_err(&render_failure("internal", &message, format));
            return ExitCode::FAILURE;
        }
    };
    let store = SessionStore::from_env(I::ROLE);
    let session = match options.session.filter(|s| !s.trim().is_empty()) {
        Some(session) => Some(session.trim().to_owned()),
        None => store.load(&servers).unwrap_or_else(|e| {
            print_err(&format!("warning: cannot read the saved session: {e}"));
            None
        }),
    };
    let client = I::connect(servers);
    client.set_session(session);
    let context = Context::<I> { client, store, format, in_shell: command.is_none() };
    match command {
        Some(command) => {
            if runtime.block_on(context.run_command(command, format)) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        None => shell::run(&runtime, &context),
    }
}
