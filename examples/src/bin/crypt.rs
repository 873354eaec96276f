//! `crypt`: encrypt files at rest with hostguard's crypto-at-rest crate.
//!
//! `crypt age` reads and writes standard age v1 files (flags as the `age` CLI); `crypt keygen`
//! makes an age identity. The logic lives in the crate; this tool parses arguments and opens
//! files. See examples/README.md.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use crypto_at_rest::age::{self, Identity, Recipient, ScryptIdentity, ScryptRecipient};
use zeroize::Zeroizing;

/// Environment variable holding a passphrase when no terminal is available.
const PASSPHRASE_ENV: &str = "CRYPT_PASSPHRASE";

const PASSPHRASE_HELP: &str = "Passphrases come from --passphrase-file, else the environment \
variable CRYPT_PASSPHRASE, else a prompt on the terminal.";

/// Encrypt files at rest: age v1 files, and identities.
#[derive(Debug, Parser)]
#[command(version, about, after_help = PASSPHRASE_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Encrypt (default) or decrypt (-d) an age v1 file, like the `age` CLI.
    #[command(after_help = PASSPHRASE_HELP)]
    Age(AgeArgs),
    /// Generate an age X25519 identity (like age-keygen); prints its recipient on stderr.
    Keygen {
        /// Write the identity here (mode 0600) instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct AgeArgs {
    /// Decrypt instead of encrypt.
    #[arg(short, long)]
    decrypt: bool,
    /// Encrypt to this recipient (age1...); repeatable.
    #[arg(short, long = "recipient", value_name = "RECIPIENT")]
    recipients: Vec<String>,
    /// Encrypt to the recipients listed in this file; repeatable.
    #[arg(short = 'R', long = "recipients-file", value_name = "PATH")]
    recipients_files: Vec<PathBuf>,
    /// Decrypt with the identities in this file (age-keygen format); repeatable.
    #[arg(short, long = "identity", value_name = "PATH")]
    identities: Vec<PathBuf>,
    /// Encrypt to a passphrase (decryption asks for one when no identity is given).
    #[arg(short, long)]
    passphrase: bool,
    /// Read the passphrase from the first line of this file.
    #[arg(long, value_name = "PATH")]
    passphrase_file: Option<PathBuf>,
    /// Write ASCII armor (PEM) instead of binary.
    #[arg(short, long)]
    armor: bool,
    /// Output file (default: stdout).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Input file (default: stdin).
    input: Option<PathBuf>,
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("crypt: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Age(args) if args.decrypt => age_decrypt(&args),
        Command::Age(args) => age_encrypt(&args),
        Command::Keygen { output } => keygen(output.as_deref()),
    }
}

fn read_text(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {what} file {}", path.display()))
}

/// The passphrase from --passphrase-file, CRYPT_PASSPHRASE or the terminal, in that order.
fn passphrase(file: Option<&Path>, confirm: bool) -> Result<Zeroizing<String>> {
    if let Some(path) = file {
        let text = Zeroizing::new(read_text(path, "passphrase")?);
        let first = text.lines().next().unwrap_or_default();
        return Ok(Zeroizing::new(first.to_owned()));
    }
    if let Ok(value) = std::env::var(PASSPHRASE_ENV) {
        return Ok(Zeroizing::new(value));
    }
    if !io::stderr().is_terminal() && !io::stdin().is_terminal() {
        bail!(
            "no passphrase: no terminal to prompt on; set {PASSPHRASE_ENV} or use --passphrase-file"
        );
    }
    let first = Zeroizing::new(
        rpassword::prompt_password("Enter passphrase: ").context("cannot read the passphrase")?,
    );
    if confirm {
        let again = Zeroizing::new(
            rpassword::prompt_password("Confirm passphrase: ")
                .context("cannot read the passphrase")?,
        );
        if *first != *again {
            bail!("passphrases do not match");
        }
    }
    if first.is_empty() {
        bail!("empty passphrase");
    }
    Ok(first)
}

/// Standard input or output as a `File` (a duplicated descriptor): unbuffered, and `Send`, so
/// the crate's multi-core engine can read and write it directly.
fn std_stream(fd: std::os::fd::BorrowedFd<'_>) -> Result<File> {
    Ok(File::from(
        fd.try_clone_to_owned()
            .context("cannot use standard input/output")?,
    ))
}

fn open_input(path: Option<&Path>) -> Result<File> {
    match path {
        Some(p) => File::open(p).with_context(|| format!("cannot open input file {}", p.display())),
        None => std_stream(io::stdin().as_fd()),
    }
}

fn create_output(path: Option<&Path>) -> Result<File> {
    match path {
        Some(p) => {
            File::create(p).with_context(|| format!("cannot create output file {}", p.display()))
        }
        None => std_stream(io::stdout().as_fd()),
    }
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn input_name(path: Option<&Path>) -> String {
    path.map_or_else(|| "standard input".to_owned(), |p| p.display().to_string())
}

fn age_encrypt(args: &AgeArgs) -> Result<()> {
    if !args.identities.is_empty() {
        bail!("-i/--identity is for decryption (-d)");
    }
    let mut x25519 = Vec::new();
    for r in &args.recipients {
        x25519.push(
            r.parse()
                .with_context(|| format!("invalid recipient {r:?}"))?,
        );
    }
    for path in &args.recipients_files {
        let text = read_text(path, "recipients")?;
        x25519.extend(age::parse_recipients(&text).with_context(|| path.display().to_string())?);
    }
    let scrypt;
    let mut recipients: Vec<&dyn Recipient> = x25519.iter().map(|r| r as &dyn Recipient).collect();
    if args.passphrase {
        if !recipients.is_empty() {
            bail!("-p/--passphrase cannot be combined with recipients");
        }
        let pass = passphrase(args.passphrase_file.as_deref(), true)?;
        scrypt = ScryptRecipient::new(pass.as_bytes());
        recipients.push(&scrypt);
    }
    if recipients.is_empty() {
        bail!("no recipients: give -r, -R or -p");
    }
    let input = open_input(args.input.as_deref())?;
    let encryptor = age::Encryptor::new(&recipients)?.armored(args.armor);
    let output = create_output(args.output.as_deref())?;
    encryptor
        .encrypt_all(input, output, threads())
        .with_context(|| format!("cannot encrypt {}", input_name(args.input.as_deref())))?;
    Ok(())
}

fn age_decrypt(args: &AgeArgs) -> Result<()> {
    if !args.recipients.is_empty() || !args.recipients_files.is_empty() || args.armor {
        bail!("-r, -R and -a are for encryption");
    }
    let mut x25519 = Vec::new();
    for path in &args.identities {
        let text = Zeroizing::new(read_text(path, "identity")?);
        x25519.extend(age::parse_identities(&text).with_context(|| path.display().to_string())?);
    }
    let scrypt;
    let mut identities: Vec<&dyn Identity> = x25519.iter().map(|i| i as &dyn Identity).collect();
    if identities.is_empty() {
        let pass = passphrase(args.passphrase_file.as_deref(), false)?;
        scrypt = ScryptIdentity::new(pass.as_bytes());
        identities.push(&scrypt);
    }
    let name = input_name(args.input.as_deref());
    let input = open_input(args.input.as_deref())?;
    let decryptor = age::Decryptor::new(&identities);
    // The output is created only once the header opened, so a wrong key never truncates it.
    let opened = decryptor
        .open(input)
        .with_context(|| format!("cannot decrypt {name}"))?;
    let output = create_output(args.output.as_deref())?;
    if let Err(e) = opened.decrypt_all(output, threads()) {
        if let Some(path) = &args.output {
            // Never leave unauthenticated or partial plaintext under the requested name.
            let _ = std::fs::remove_file(path);
        }
        let what = match e {
            crypto_at_rest::Error::Io(_) => format!("cannot decrypt {name}"),
            _ => format!("cannot decrypt {name}: the file is damaged or truncated"),
        };
        return Err(anyhow::Error::new(e).context(what));
    }
    Ok(())
}

fn keygen(output: Option<&Path>) -> Result<()> {
    let identity = age::X25519Identity::generate()?;
    let recipient = identity.to_public();
    let text = Zeroizing::new(format!(
        "# public key: {recipient}\n{}\n",
        identity.to_secret_string().as_str()
    ));
    match output {
        Some(path) => {
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("cannot create identity file {}", path.display()))?;
            file.write_all(text.as_bytes())?;
        }
        None => io::stdout().lock().write_all(text.as_bytes())?,
    }
    eprintln!("Public key: {recipient}");
    Ok(())
}
