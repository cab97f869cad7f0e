//! The interactive shell: `agora seller` or `agora buyer` with no command. Each line is
//! split like a shell would (quotes work) and parsed by the same clap commands as the
//! one-shot CLI; a bad line prints clap's message and the shell goes on.

use std::io::IsTerminal;
use std::process::ExitCode;

use agora_domain::Role;
use clap::error::ErrorKind;
use clap::{FromArgMatches, Subcommand};
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;
use tokio::runtime::Runtime;

use crate::output::Format;
use crate::run::{Context, Interface, print_err, print_out};

/// One parsed shell line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellLine<C> {
    /// A command to run.
    Command {
        /// The command.
        command: C,
        /// Whether `--json` asked for its result as JSON.
        json: bool,
    },
    /// `exit` or `quit`.
    Exit,
}

/// The clap command a shell line is parsed with: the role's commands, plus `exit` (alias
/// `quit`), with `help` listing them. `multicall` makes the first word the command.
pub fn shell_parser<C: Subcommand>(role: Role) -> clap::Command {
    let parser = clap::Command::new(role.as_str())
        .multicall(true)
        .subcommand_required(true)
        .subcommand_value_name("COMMAND")
        .subcommand_help_heading("Commands")
        .help_template("{all-args}\n\nType `help COMMAND` or `COMMAND --help` for its options.");
    // `--json` as the one-shot CLI has it; a multicall command takes no options of its
    // own, so every command gets it.
    C::augment_subcommands(parser)
        .mut_subcommands(|command| {
            command.arg(
                clap::Arg::new("json")
                    .long("json")
                    .action(clap::ArgAction::SetTrue)
                    .help("Print the result as JSON (docs/http.md has the shapes)"),
            )
        })
        .subcommand(
            clap::Command::new("exit").alias("quit").about("Leave the shell (or press Ctrl-D)"),
        )
}

/// Parses one line typed at the `role` shell. `Err` holds what to show instead: clap's
/// help or error text (print it with [`clap::Error::print`]), or a quoting error.
pub fn parse_shell_line<C: Subcommand + FromArgMatches>(
    role: Role,
    line: &str,
) -> Result<ShellLine<C>, clap::Error> {
    let words = shell_words::split(line)
        .map_err(|e| clap::Error::raw(ErrorKind::InvalidValue, format!("{e}\n")))?;
    let matches = shell_parser::<C>(role).try_get_matches_from(words)?;
    if matches.subcommand_name() == Some("exit") {
        return Ok(ShellLine::Exit);
    }
    let json = matches.subcommand().is_some_and(|(_, sub)| sub.get_flag("json"));
    let command = C::from_arg_matches(&matches)?;
    Ok(ShellLine::Command { command, json })
}

/// Whether a line may carry a password, and so must stay out of the history file.
fn has_secret(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let first = words.next().unwrap_or_default();
    matches!(first, "login" | "create-account")
        || words.any(|w| w.starts_with("--password") || w.starts_with("-p"))
}

/// Reads and runs lines until `exit`, `quit` or end of input. Interactive, it exits with
/// success; reading a script from a pipe, with failure if any line failed.
pub(crate) fn run<I: Interface>(runtime: &Runtime, context: &Context<I>) -> ExitCode {
    let mut editor = match DefaultEditor::new() {
        Ok(editor) => editor,
        Err(e) => {
            print_err(&format!("error: cannot start the shell: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let history = context.store.history_path();
    if let Some(path) = &history {
        // No history yet is the normal first run; an unreadable one is not worth stopping.
        let _ = editor.load_history(path);
    }
    let role = I::ROLE;
    let interactive = std::io::stdin().is_terminal();
    // Lines piped in are a script: its exit code says whether any line failed.
    let mut failed = false;
    if interactive {
        print_out(&format!("Agora {role} shell: `help` lists the commands, `exit` leaves."));
    }
    let prompt = format!("{role}> ");
    loop {
        let line = match editor.readline(&prompt) {
            Ok(line) => line,
            // Ctrl-C abandons the line being typed, as in a shell.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                print_err(&format!("error: cannot read the terminal: {e}"));
                break;
            }
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !has_secret(line) {
            let _ = editor.add_history_entry(line);
        }
        match parse_shell_line::<I::Command>(role, line) {
            Ok(ShellLine::Exit) => break,
            Ok(ShellLine::Command { command, json }) => {
                let format = if json { Format::Json } else { context.format };
                failed |= !runtime.block_on(context.run_command(command, format));
            }
            // Help goes to stdout, mistakes to stderr; either way the shell goes on.
            Err(shown) => {
                failed |= shown.use_stderr();
                let _ = shown.print();
            }
        }
    }
    if let Some(path) = &history
        && context.store.ensure_dir().is_ok()
        && let Err(e) = editor.save_history(path)
    {
        print_err(&format!("warning: cannot save the history to {}: {e}", path.display()));
    }
    if failed && !interactive { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
