//! `ktwin auth`: create, scope, rotate, revoke and list API tokens and device credentials in
//! their files — a project's `.ktwin/auth/` for `ktwin up`, or any file that becomes a
//! Kubernetes Secret. A new token or password is printed once, alone on stdout (so
//! `TOKEN=$(ktwin auth token add …)` works); the files keep only hashes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use crate::local::{DEVICES_FILE, TOKENS_FILE};
use crate::mqtt::{DeviceCredentialFile, DeviceGrant, DeviceRef};
use crate::{Scope, TokenFile, TwinGrant};

/// Manage credentials.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// What to manage.
    #[command(subcommand)]
    pub command: AuthCommand,
}

/// Where the file is: `--file`, else `<project>/.ktwin/auth/<name>`.
#[derive(Debug, Clone, clap::Args)]
pub struct FileArgs {
    /// The project whose `ktwin up` credentials to change.
    #[arg(long, default_value = ".")]
    pub project: PathBuf,
    /// This file instead (e.g. one to put in a Kubernetes Secret).
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
}

impl FileArgs {
    fn path(&self, name: &str) -> PathBuf {
        self.file
            .clone()
            .unwrap_or_else(|| self.project.join(".ktwin").join("auth").join(name))
    }
}

/// `ktwin auth` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AuthCommand {
    /// API bearer tokens (HTTP).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Device credentials (MQTT).
    #[command(subcommand)]
    Device(DeviceCommand),
}

/// `ktwin auth token …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TokenCommand {
    /// Issue a token and print it (once).
    Add {
        /// Who holds it (shown in access logs).
        name: String,
        /// What it may do: read, write or admin.
        #[arg(long, default_value = "read")]
        scope: Scope,
        /// Limit it to twins of this interface (repeatable).
        #[arg(long = "interface", value_name = "INTERFACE")]
        interfaces: Vec<String>,
        /// Limit it to instances whose name starts with this (repeatable).
        #[arg(long = "instance-prefix", value_name = "PREFIX")]
        instance_prefixes: Vec<String>,
        /// When it stops working (RFC 3339, e.g. 2027-01-01T00:00:00Z).
        #[arg(long)]
        expires: Option<DateTime<Utc>>,
        /// Where the file is.
        #[command(flatten)]
        file: FileArgs,
    },
    /// Replace a token by a new one with the same rights and print it; the old one stops
    /// working as soon as the file is reloaded (within seconds).
    Rotate {
        /// The token's name.
        name: String,
        /// Where the file is.
        #[command(flatten)]
        file: FileArgs,
    },
    /// Remove a token.
    Revoke {
        /// The token's name.
        name: String,
        /// Where the file is.
        #[command(flatten)]
        file: FileArgs,
    },
    /// List the tokens (names and rights; the file holds no token).
    List {
        /// Where the file is.
        #[command(flatten)]
        file: FileArgs,
    },
}

/// `ktwin auth device …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DeviceCommand {
    /// Issue (or re-issue) a device credential and print its password (once).
    Add {
        /// The MQTT username.
        username: String,
        /// It speaks for every instance of this interface (repeatable).
        #[arg(long = "interface", value_name = "INTERFACE")]
        interfaces: Vec<String>,
        /// It speaks for this device, `<interface>/<instance>` (repeatable).
        #[arg(long = "device", value_name = "INTERFACE/INSTANCE", value_parser = parse_device)]
        devices: Vec<DeviceRef>,
        /// Where the file is.
        #[command(flatten)]
        file: FileArgs,
    },
    /// Remove a device credential.
    Revoke {
        /// The MQTT username.
        username: String,
        /// Where the file is.
        #[command(flatten)]
        file: FileArgs,
    },
    /// List the device credentials (usernames and grants).
    List {
        /// Where the file is.
        #[command(flatten)]
        file: FileArgs,
    },
}

fn parse_device(text: &str) -> Result<DeviceRef, String> {
    let (interface, instance) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?}: expected <interface>/<instance>"))?;
    Ok(DeviceRef {
        interface: interface.to_owned(),
        instance: instance.to_owned(),
    })
}

/// Runs `ktwin auth`.
pub fn run(args: AuthArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AuthCommand::Token(command) => token(command),
        AuthCommand::Device(command) => device(command),
    }
    .map(|()| ExitCode::SUCCESS)
}

fn load_tokens(path: &Path) -> anyhow::Result<TokenFile> {
    if !path.exists() {
        return Ok(TokenFile::default());
    }
    TokenFile::load(path).with_context(|| format!("reading {}", path.display()))
}

fn load_devices(path: &Path) -> anyhow::Result<DeviceCredentialFile> {
    if !path.exists() {
        return Ok(DeviceCredentialFile::default());
    }
    DeviceCredentialFile::load(path).with_context(|| format!("reading {}", path.display()))
}

fn token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Add {
            name,
            scope,
            interfaces,
            instance_prefixes,
            expires,
            file,
        } => {
            let path = file.path(TOKENS_FILE);
            let mut tokens = load_tokens(&path)?;
            anyhow::ensure!(
                tokens.tokens.iter().all(|entry| entry.name != name),
                "{}: a token named {name:?} exists; rotate or revoke it",
                path.display()
            );
            let grant = TwinGrant {
                interfaces: interfaces.into_iter().collect(),
                instance_prefixes,
            };
            let secret = tokens.issue(&name, scope, grant, expires)?;
            tokens.save(&path)?;
            eprintln!("token {name:?} ({scope}) added to {}", path.display());
            println!("{}", secret.expose());
        }
        TokenCommand::Rotate { name, file } => {
            let path = file.path(TOKENS_FILE);
            let mut tokens = load_tokens(&path)?;
            let old = tokens
                .tokens
                .iter()
                .find(|entry| entry.name == name)
                .cloned()
                .with_context(|| format!("{}: no token named {name:?}", path.display()))?;
            tokens.revoke(&name);
            let secret = tokens.issue(&name, old.scope, old.grant, old.expires)?;
            tokens.save(&path)?;
            eprintln!("token {name:?} rotated in {}", path.display());
            println!("{}", secret.expose());
        }
        TokenCommand::Revoke { name, file } => {
            let path = file.path(TOKENS_FILE);
            let mut tokens = load_tokens(&path)?;
            anyhow::ensure!(
                tokens.revoke(&name),
                "{}: no token named {name:?}",
                path.display()
            );
            tokens.save(&path)?;
            eprintln!("token {name:?} revoked in {}", path.display());
        }
        TokenCommand::List { file } => {
            for entry in load_tokens(&file.path(TOKENS_FILE))?.tokens {
                let expires = entry
                    .expires
                    .map(|at| format!(" expires {}", at.to_rfc3339()))
                    .unwrap_or_default();
                println!(
                    "{}\t{}\t{}{expires}",
                    entry.name,
                    entry.scope,
                    describe_grant(&entry.grant)
                );
            }
        }
    }
    Ok(())
}

fn describe_grant(grant: &TwinGrant) -> String {
    if grant.is_unlimited() {
        return "every twin".to_owned();
    }
    let list = |items: Vec<&str>| {
        if items.is_empty() {
            "any".to_owned()
        } else {
            items.join(",")
        }
    };
    format!(
        "interfaces {} instance prefixes {}",
        list(grant.interfaces.iter().map(String::as_str).collect()),
        list(grant.instance_prefixes.iter().map(String::as_str).collect())
    )
}

fn device(command: DeviceCommand) -> anyhow::Result<()> {
    match command {
        DeviceCommand::Add {
            username,
            interfaces,
            devices,
            file,
        } => {
            let path = file.path(DEVICES_FILE);
            let mut credentials = load_devices(&path)?;
            let grant = DeviceGrant {
                interfaces: interfaces.into_iter().collect::<BTreeSet<_>>(),
                devices,
            };
            anyhow::ensure!(
                !grant.is_empty(),
                "a device credential needs --interface or --device"
            );
            let password = credentials.issue(&username, grant)?;
            credentials.save(&path)?;
            eprintln!(
                "device credential {username:?} written to {}",
                path.display()
            );
            println!("{}", password.expose());
        }
        DeviceCommand::Revoke { username, file } => {
            let path = file.path(DEVICES_FILE);
            let mut credentials = load_devices(&path)?;
            anyhow::ensure!(
                credentials.revoke(&username),
                "{}: no device credential {username:?}",
                path.display()
            );
            credentials.save(&path)?;
            eprintln!(
                "device credential {username:?} revoked in {}",
                path.display()
            );
        }
        DeviceCommand::List { file } => {
            for credential in load_devices(&file.path(DEVICES_FILE))?.credentials {
                let devices: Vec<String> = credential
                    .grant
                    .devices
                    .iter()
                    .map(|d| format!("{}/{}", d.interface, d.instance))
                    .collect();
                let interfaces: Vec<&str> = credential
                    .grant
                    .interfaces
                    .iter()
                    .map(String::as_str)
                    .collect();
                println!(
                    "{}\tinterfaces {}\tdevices {}",
                    credential.username,
                    interfaces.join(","),
                    devices.join(",")
                );
            }
        }
    }
    Ok(())
}
