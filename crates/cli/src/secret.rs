//! Secrets a command needs but was not given: a password or a card number is asked for at
//! the terminal, without echo, so that it stays out of the command line and the shell
//! history. Scripts, whose standard input is no terminal, pass the flag or the
//! environment variable instead, and are told so.

use std::io::IsTerminal;

use agora_client::{ApiError, ClientError, ErrorCode};

/// A secret the user must supply.
pub(crate) struct Secret {
    /// What is asked for, as the prompt says it: "Password".
    pub(crate) prompt: &'static str,
    /// Its flag, for the message when it cannot be asked for.
    pub(crate) flag: &'static str,
    /// Its environment variable, likewise.
    pub(crate) env: &'static str,
}

/// The password of `login` and `create-account`.
pub(crate) const PASSWORD: Secret =
    Secret { prompt: "Password", flag: "--password", env: "AGORA_PASSWORD" };

/// The card number of `purchase`.
pub(crate) const CARD_NUMBER: Secret =
    Secret { prompt: "Card number", flag: "--number", env: "AGORA_CARD_NUMBER" };

impl Secret {
    /// `given` if there is one, else what the user types at the terminal.
    pub(crate) fn or_ask(&self, given: Option<String>) -> Result<String, ClientError> {
        if let Some(value) = given {
            return Ok(value);
        }
        if !std::io::stdin().is_terminal() {
            return Err(self.refusal(format!(
                "no {what}: pass {flag} or set {env} (at a terminal it is asked for)",
                what = self.prompt.to_lowercase(),
                flag = self.flag,
                env = self.env,
            )));
        }
        let typed = read_hidden(self.prompt).map_err(|e| {
            self.refusal(format!(
                "cannot read the {} from the terminal ({e}): pass {} or set {}",
                self.prompt.to_lowercase(),
                self.flag,
                self.env
            ))
        })?;
        Ok(typed)
    }

    fn refusal(&self, message: String) -> ClientError {
        ClientError::Refused(ApiError::new(ErrorCode::InvalidArgument, message))
    }
}

/// Prints `prompt: ` and reads a line from the terminal on standard input without echo.
/// Echo goes off before the prompt shows, so nothing typed ahead of it is shown either,
/// and comes back however reading ends.
fn read_hidden(prompt: &str) -> std::io::Result<String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    use std::io::Write;
    let stdin = std::io::stdin();
    let before = tcgetattr(&stdin)?;
    let mut hidden = before.clone();
    hidden.local_modes.remove(LocalModes::ECHO);
    hidden.local_modes.insert(LocalModes::ECHONL);
    tcsetattr(&stdin, OptionalActions::Flush, &hidden)?;
    let mut line = String::new();
    let read = write!(std::io::stderr(), "{prompt}: ")
        .and_then(|()| std::io::stderr().flush())
        .and_then(|()| stdin.read_line(&mut line));
    tcsetattr(&stdin, OptionalActions::Now, &before)?;
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}
