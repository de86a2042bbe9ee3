//! Every `ktwin` command `docs/install.md` tells a user to run exists: each parses with the real
//! `ktwin` parser (what the commands render is tested in `crates/operator/tests`).

use clap::Parser;
use ktwin::Cli;

#[test]
fn every_ktwin_command_of_the_install_guide_parses() {
    let path = ktwin_testkit::workspace_root().join("docs/install.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut in_shell = false;
    let mut commands = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_shell = line == "```sh";
            continue;
        }
        if in_shell && line.starts_with("ktwin ") {
            let command = line.split(" > ").next().unwrap_or(line);
            commands.push(command.to_owned());
        }
    }
    assert!(commands.len() >= 8, "{commands:?}");
    for command in &commands {
        let argv: Vec<&str> = command.split_whitespace().collect();
        if let Err(err) = Cli::try_parse_from(&argv) {
            panic!("docs/install.md: `{command}` does not parse:\n{err}");
        }
    }
}
