//! The single confirmation before anything changes; reads from an injected input so that it
//! can be tested without a terminal.

use std::io::{self, BufRead, IsTerminal, Write};

use crate::error::Error;
use crate::exit::ExitStatus;
use crate::interrupt::Interrupt;

/// The one confirmation of a run: `None` to go on (`--yes`, or the user said yes), else the
/// status to stop with (declined, or interrupted at the prompt).
pub async fn approve(
    yes: bool,
    question: String,
    interrupt: &Interrupt,
) -> Result<Option<ExitStatus>, Error> {
    if yes || ask_terminal(question, interrupt).await? {
        return Ok(None);
    }
    Ok(Some(if interrupt.is_set() {
        Interrupt::stopped_before_changes("at the confirmation prompt")
    } else {
        eprintln!("Declined: nothing was changed.");
        ExitStatus::Declined
    }))
}

/// Asks `question` once on stderr and reads the answer from the terminal; refuses when stdin
/// is not a terminal. Ctrl-C at the prompt counts as no.
async fn ask_terminal(question: String, interrupt: &Interrupt) -> Result<bool, Error> {
    if !io::stdin().is_terminal() {
        return Err(Error::NoTerminal);
    }
    let ask = tokio::task::spawn_blocking(move || {
        let mut input = io::stdin().lock();
        ask(&question, &mut input, &mut io::stderr())
    });
    Ok(interrupt.race(ask).await.is_some_and(|answer| matches!(answer, Ok(Ok(true)))))
}

/// Asks `question` on `output` and reads one answer; only "y" or "yes" proceeds.
pub fn ask(question: &str, input: &mut dyn BufRead, output: &mut dyn Write) -> io::Result<bool> {
    write!(output, "{question} [y/N] ")?;
    output.flush()?;
    let mut answer = String::new();
    if input.read_line(&mut answer)? == 0 {
        writeln!(output)?;
        return Ok(false);
    }
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(typed: &str) -> bool {
        let mut output = Vec::new();
        let yes = ask("Apply?", &mut typed.as_bytes(), &mut output).expect("in memory");
        assert_eq!(String::from_utf8(output).expect("utf-8").trim_end(), "Apply? [y/N]");
        yes
    }

    #[test]
    fn only_an_explicit_yes_proceeds() {
        assert!(answer("y\n"));
        assert!(answer("YES\n"));
        assert!(!answer("\n"), "the default is no");
        assert!(!answer("n\n"));
        assert!(!answer("yep\n"));
        assert!(!answer(""), "end of input is no");
    }
}
