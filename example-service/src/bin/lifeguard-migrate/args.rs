//! The command line: parsed by hand, as it is a handful of flags and one command.

use lifeguard_core::migrate::commands::Command;

/// The usage text.
pub const USAGE: &str = "\
usage: lifeguard-migrate [--url URL] [--dir DIR] [--schema SCHEMA] COMMAND

commands:
  up                 apply every pending migration
  down [N]           revert the N most recent migrations (default 1)
  down --to VERSION  revert every migration above VERSION (0: all)
  status             list migrations: applied, pending, changed, unknown
  drift              compare the models with the live schema (exit 3 on differences)

options:
  --url URL          the database (default: $DATABASE_URL, then $LIFEGUARD_PRIMARY_URL)
  --dir DIR          read DIR/*.sql at run time instead of the embedded migrations
  --schema SCHEMA    keep the tracking table lifeguard_migrations in SCHEMA
";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Invocation {
    /// `-h`, `--help` or `help` anywhere: print the usage text.
    Help,
    /// Run a command.
    Run(Args),
}

/// A command and its options.
#[derive(Debug, PartialEq, Eq)]
pub struct Args {
    /// `--url`.
    pub url: Option<String>,
    /// `--dir`.
    pub dir: Option<String>,
    /// `--schema`.
    pub schema: Option<String>,
    /// The command.
    pub command: Command,
}

/// Parses the arguments after the program name; `Err` is the message for a usage error.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Invocation, String> {
    let (mut url, mut dir, mut schema) = (None, None, None);
    let mut help = false;
    let mut words = Vec::new();
    let mut to: Option<i64> = None;
    let mut iter = args.into_iter();
    while let Some(arg) = iter.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| iter.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" | "help" => help = true,
            "--url" => url = Some(value("--url")?),
            "--dir" => dir = Some(value("--dir")?),
            "--schema" => schema = Some(value("--schema")?),
            "--to" => {
                let v = value("--to")?;
                to = Some(
                    v.parse()
                        .map_err(|_| format!("--to needs a version number, got {v:?}"))?,
                );
            }
            f if f.starts_with('-') => return Err(format!("unknown option {f}")),
            _ => words.push(arg),
        }
    }
    if help {
        return Ok(Invocation::Help);
    }
    let mut words = words.into_iter();
    let command = match words.next().as_deref() {
        None => return Err("no command given".into()),
        Some("up") => Command::Up,
        Some("status") => Command::Status,
        Some("drift") => Command::Drift,
        Some("down") => match (to, words.next()) {
            (Some(_), Some(n)) => {
                return Err(format!("down takes N or --to VERSION, not both ({n})"))
            }
            (Some(v), None) => Command::DownTo(v),
            (None, None) => Command::Down(1),
            (None, Some(n)) => Command::Down(
                n.parse()
                    .map_err(|_| format!("down takes a count, got {n:?}"))?,
            ),
        },
        Some(other) => return Err(format!("unknown command {other:?}")),
    };
    if to.is_some() && !matches!(command, Command::DownTo(_)) {
        return Err("--to goes with down".into());
    }
    if let Some(extra) = words.next() {
        return Err(format!("unexpected argument {extra:?}"));
    }
    Ok(Invocation::Run(Args {
        url,
        dir,
        schema,
        command,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Invocation, String> {
        parse(args.iter().map(|s| s.to_string()))
    }

    fn command(args: &[&str]) -> Command {
        match parse_strs(args) {
            Ok(Invocation::Run(a)) => a.command,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn commands() {
        assert_eq!(command(&["up"]), Command::Up);
        assert_eq!(command(&["down"]), Command::Down(1));
        assert_eq!(command(&["down", "3"]), Command::Down(3));
        assert_eq!(command(&["down", "--to", "0"]), Command::DownTo(0));
        assert_eq!(command(&["--to=2", "down"]), Command::DownTo(2));
        assert_eq!(
            parse_strs(&[
                "--url",
                "postgres://x",
                "status",
                "--dir=m",
                "--schema",
                "s",
            ]),
            Ok(Invocation::Run(Args {
                url: Some("postgres://x".into()),
                dir: Some("m".into()),
                schema: Some("s".into()),
                command: Command::Status,
            }))
        );
        assert_eq!(parse_strs(&["drift", "--help"]), Ok(Invocation::Help));
    }

    #[test]
    fn mistakes() {
        for bad in [
            &[][..],
            &["sideways"],
            &["down", "x"],
            &["down", "1", "--to", "2"],
            &["up", "--to", "2"],
            &["up", "extra"],
            &["--url"],
            &["--verbose", "up"],
        ] {
            assert!(parse_strs(bad).is_err(), "{bad:?}");
        }
    }
}
