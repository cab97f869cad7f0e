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
    let parser = shell_parser::<C>(role);
    let matches = match parser.clone().try_get_matches_from(&words) {
        Ok(matches) => matches,
        Err(e) if e.kind() == ErrorKind::InvalidSubcommand => {
            return Err(unknown_command(&parser, words.first().map_or("", String::as_str)));
        }
        Err(e) => return Err(e),
    };
    if matches.subcommand_name() == Some("exit") {
        return Ok(ShellLine::Exit);
    }
    let json = matches.subcommand().is_some_and(|(_, sub)| sub.get_flag("json"));
    let command = C::from_arg_matches(&matches)?;
    Ok(ShellLine::Command { command, json })
}

/// The error for a first word that is no command: clap's would suggest any command that
/// shares a few letters (`logout` for `bogus`) and end with the usage line of a multicall
/// parser, `Usage: <COMMAND>`. Ours suggests only a near miss and says what the shell
/// takes.
fn unknown_command(parser: &clap::Command, typed: &str) -> clap::Error {
    let names: Vec<&str> = parser
        .get_subcommands()
        .flat_map(|c| std::iter::once(c.get_name()).chain(c.get_all_aliases()))
        .filter(|name| *name != "help")
        .collect();
    let mut message = format!("`{typed}` is not a command");
    if let Some(near) = nearest(typed, &names) {
        message.push_str(&format!("; did you mean `{near}`?"));
    }
    message.push_str(
        "
`help` lists the commands, `help COMMAND` shows one; `exit` leaves.
",
    );
    clap::Error::raw(ErrorKind::InvalidSubcommand, message)
}

/// The one of `names` `typed` is a near miss of: a slip of at most one letter in four
/// (two in a long word), or the start of exactly one name.
fn nearest<'a>(typed: &str, names: &[&'a str]) -> Option<&'a str> {
    let typed = typed.to_ascii_lowercase();
    let close = |name: &str| {
        let allowed = (name.chars().count() / 4).clamp(1, 2);
        edit_distance(&typed, name) <= allowed
    };
    let nearest =
        names.iter().copied().filter(|n| close(n)).min_by_key(|n| edit_distance(&typed, n));
    if nearest.is_some() {
        return nearest;
    }
    let starting: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| typed.len() >= 2 && n.starts_with(typed.as_str()))
        .collect();
    match starting[..] {
        [one] => Some(one),
        _ => None,
    }
}

/// Letters added, removed, changed or swapped with their neighbour to make `a` into `b`
/// (optimal string alignment: `serach` is one slip from `search`).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buyer::BuyerCommand;

    fn said(line: &str) -> String {
        match parse_shell_line::<BuyerCommand>(Role::Buyer, line) {
            Err(e) => e.to_string(),
            Ok(parsed) => panic!("{line:?} parsed as {parsed:?}"),
        }
    }

    #[test]
    fn only_a_near_miss_is_suggested_and_the_shell_says_what_it_takes() {
        let bogus = said("bogus");
        assert!(bogus.starts_with("error: `bogus` is not a command\n"), "{bogus}");
        assert!(!bogus.contains("logout") && !bogus.contains("Usage: <COMMAND>"), "{bogus}");
        assert!(bogus.contains("`help` lists the commands"), "{bogus}");
        assert!(said("serach --category 3").contains("did you mean `search`?"));
        assert!(said("purchse").contains("did you mean `purchase`?"));
        assert!(said("categ").contains("did you mean `categories`?"), "a unique start");
        assert!(!said("c").contains("did you mean"), "too short to tell");
        assert!(said("qiut").contains("did you mean `quit`?"));
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("search", "search"), 0);
        assert_eq!(edit_distance("serach", "search"), 1, "a swap is one slip");
        assert_eq!(edit_distance("cart", "carts"), 1);
        assert_eq!(edit_distance("bogus", "logout"), 3);
    }
}
