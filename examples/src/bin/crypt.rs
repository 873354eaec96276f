//! `crypt`: encrypt files at rest with hostguard's crypto-at-rest crate.
//!
//! `crypt seal`/`open` encrypt files as hostguard streams under a keyring, `crypt rotate` adds a
//! new primary key and re-wraps files under it; `crypt age` reads and writes standard age v1
//! files (flags as the `age` CLI) and `crypt keygen` makes an age identity. The logic lives in
//! the crate; this tool parses arguments and opens files. See examples/README.md.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use crypto_at_rest::age::{self, Identity, Recipient, ScryptIdentity, ScryptRecipient};
use crypto_at_rest::output::AtomicOutput;
use crypto_at_rest::{CipherConfig, Kdf, KeyId, Keyring, SecretKey};
use zeroize::Zeroizing;

/// Environment variable holding a passphrase when no terminal is available.
const PASSPHRASE_ENV: &str = "CRYPT_PASSPHRASE";
/// Environment variable holding a keyring's text form when no --keyring file is given.
const KEYRING_ENV: &str = "CRYPT_KEYRING";

const PASSPHRASE_HELP: &str = "Passphrases come from --passphrase-file, else the environment \
variable CRYPT_PASSPHRASE, else a prompt on the terminal. Without --keyring, the keyring's text \
form is read from the environment variable CRYPT_KEYRING. An empty passphrase is refused. \
An output file (-o) appears only once it is complete: a failure leaves an existing file as it \
was; devices, FIFOs and /dev/stdout are written directly and never removed.";

/// Encrypt files at rest: age v1 files, and identities.
#[derive(Debug, Parser)]
#[command(version, about, after_help = PASSPHRASE_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a keyring file (mode 0600) with one fresh primary key.
    #[command(after_help = PASSPHRASE_HELP)]
    InitKeyring {
        /// The keyring file to create.
        #[arg(short, long)]
        keyring: PathBuf,
        /// Seal the keyring file under a passphrase (scrypt, OWASP 2023 parameters).
        #[arg(short, long)]
        passphrase: bool,
        #[command(flatten)]
        pass: PassArgs,
    },
    /// Encrypt a file as a hostguard stream under the keyring's primary key.
    #[command(after_help = PASSPHRASE_HELP)]
    Seal(KeyringIo),
    /// Decrypt a file sealed by `crypt seal` with any key of the keyring.
    #[command(after_help = PASSPHRASE_HELP)]
    Open(KeyringIo),
    /// Add a new primary key to the keyring (old keys still open), then re-wrap each FILE's data
    /// key under it in place, without re-encrypting the payload. Files it cannot re-wrap are all
    /// listed; rerunning the command then finishes the job under the same new key (the pending
    /// rotation is kept in KEYRING.rotating until every file is done).
    #[command(after_help = PASSPHRASE_HELP)]
    Rotate {
        #[command(flatten)]
        keyring: KeyringArgs,
        /// Files to re-wrap under the new primary key.
        files: Vec<PathBuf>,
    },
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
struct PassArgs {
    /// Read the passphrase from the first line of this file.
    #[arg(long, value_name = "PATH")]
    passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct KeyringArgs {
    /// Keyring file: the text form, or sealed under a passphrase (default: $CRYPT_KEYRING).
    #[arg(short, long)]
    keyring: Option<PathBuf>,
    #[command(flatten)]
    pass: PassArgs,
}

#[derive(Debug, Args)]
struct KeyringIo {
    #[command(flatten)]
    keyring: KeyringArgs,
    /// Associated data the file is bound to (for example a customer or object id); opening
    /// needs the same value. Never the file name, so a renamed file still opens.
    #[arg(short, long, default_value = "")]
    context: String,
    /// Output file (default: stdout).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Input file (default: stdin).
    input: Option<PathBuf>,
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
        Command::InitKeyring {
            keyring,
            passphrase,
            pass,
        } => init_keyring(&keyring, passphrase, &pass),
        Command::Seal(args) => seal(&args),
        Command::Open(args) => open(&args),
        Command::Rotate { keyring, files } => rotate(&keyring, &files),
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
        if first.is_empty() {
            bail!(
                "empty passphrase: the first line of {} is empty",
                path.display()
            );
        }
        return Ok(Zeroizing::new(first.to_owned()));
    }
    if let Ok(value) = std::env::var(PASSPHRASE_ENV) {
        if value.is_empty() {
            bail!("empty passphrase: {PASSPHRASE_ENV} is set but empty");
        }
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

/// Where a command writes: a file that appears only once complete, or standard output.
enum Output {
    File(AtomicOutput),
    Stdout(File),
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::File(f) => f.write(buf),
            Output::Stdout(f) => f.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::File(f) => f.flush(),
            Output::Stdout(f) => f.flush(),
        }
    }
}

impl Output {
    /// Publishes a file output (dropping an uncommitted one leaves the target as it was).
    fn commit(self, path: Option<&Path>) -> Result<()> {
        match self {
            Output::File(f) => f.commit().with_context(|| {
                format!(
                    "cannot write output file {}",
                    path.unwrap_or(Path::new("")).display()
                )
            }),
            Output::Stdout(mut f) => Ok(f.flush()?),
        }
    }
}

/// The output for `path` (standard output without one), refused if it is `input` itself:
/// reading a file while replacing or appending to it would lose it.
fn create_output(path: Option<&Path>, input: &File) -> Result<Output> {
    let (output, same) = match path {
        Some(p) => {
            let out = AtomicOutput::create(p)
                .with_context(|| format!("cannot create output file {}", p.display()))?;
            let same = out.is_same_file(input)?;
            (Output::File(out), same)
        }
        None => {
            let out = std_stream(io::stdout().as_fd())?;
            let (a, b) = (out.metadata()?, input.metadata()?);
            let same = a.is_file() && (a.dev(), a.ino()) == (b.dev(), b.ino());
            (Output::Stdout(out), same)
        }
    };
    if same {
        let name = path.map_or_else(|| "standard output".into(), |p| p.display().to_string());
        bail!("the output {name} is the input file; write to another file");
    }
    Ok(output)
}

/// Worker threads for the crates' parallel calls: 0 means every available core.
const ALL_CORES: usize = 0;

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
    let mut output = create_output(args.output.as_deref(), &input)?;
    encryptor
        .encrypt_all(input, &mut output, ALL_CORES)
        .with_context(|| format!("cannot encrypt {}", input_name(args.input.as_deref())))?;
    output.commit(args.output.as_deref())
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
    let same_check = input.try_clone()?;
    let decryptor = age::Decryptor::new(&identities);
    // The output is created only once the header opened, so a wrong key never truncates it.
    let opened = decryptor.open(input).map_err(|e| {
        let hint = match e {
            crypto_at_rest::Error::NoMatchingIdentity if x25519.is_empty() => {
                ": wrong passphrase, or the file is not encrypted to a passphrase"
            }
            _ => "",
        };
        anyhow::Error::new(e).context(format!("cannot decrypt {name}{hint}"))
    })?;
    let mut output = create_output(args.output.as_deref(), &same_check)?;
    // On failure the output is dropped uncommitted: no partial plaintext under the name.
    if let Err(e) = opened.decrypt_all(&mut output, ALL_CORES) {
        let what = match e {
            crypto_at_rest::Error::Io(_) => format!("cannot decrypt {name}"),
            _ => format!("cannot decrypt {name}: the file is damaged or truncated"),
        };
        return Err(anyhow::Error::new(e).context(what));
    }
    output.commit(args.output.as_deref())
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

/// A loaded keyring and, if its file is passphrase-sealed, the passphrase to re-seal it with.
struct LoadedKeyring {
    keyring: Keyring,
    passphrase: Option<Zeroizing<String>>,
}

fn load_keyring(args: &KeyringArgs) -> Result<LoadedKeyring> {
    let Some(path) = &args.keyring else {
        let keyring = Keyring::from_env(KEYRING_ENV)
            .with_context(|| format!("no --keyring given and {KEYRING_ENV} is not usable"))?;
        return Ok(LoadedKeyring {
            keyring,
            passphrase: None,
        });
    };
    let text = Zeroizing::new(read_text(path, "keyring")?);
    let context = || format!("cannot load keyring {}", path.display());
    if Keyring::is_sealed_file(&text) {
        let pass = passphrase(args.pass.passphrase_file.as_deref(), false)?;
        let keyring = Keyring::open_with_passphrase(&text, pass.as_bytes())
            .with_context(|| format!("{}: wrong passphrase or damaged file", context()))?;
        return Ok(LoadedKeyring {
            keyring,
            passphrase: Some(pass),
        });
    }
    Ok(LoadedKeyring {
        keyring: Keyring::parse(&text).with_context(context)?,
        passphrase: None,
    })
}

fn save_keyring(keyring: &Keyring, passphrase: Option<&str>, path: &Path) -> Result<()> {
    let context = || format!("cannot write keyring {}", path.display());
    match passphrase {
        Some(pass) => keyring
            .save_sealed(path, pass.as_bytes(), Kdf::SCRYPT_OWASP_2023)
            .with_context(context),
        None => keyring.save(path).with_context(context),
    }
}

fn init_keyring(path: &Path, sealed: bool, pass: &PassArgs) -> Result<()> {
    if path.exists() {
        bail!("keyring {} already exists", path.display());
    }
    let keyring = Keyring::generate(KeyId(1))?;
    let passphrase = if sealed {
        Some(passphrase(pass.passphrase_file.as_deref(), true)?)
    } else {
        None
    };
    save_keyring(&keyring, passphrase.as_deref().map(String::as_str), path)?;
    eprintln!("created keyring {} with primary key id 1", path.display());
    Ok(())
}

fn seal(args: &KeyringIo) -> Result<()> {
    let loaded = load_keyring(&args.keyring)?;
    let input = open_input(args.input.as_deref())?;
    let mut output = create_output(args.output.as_deref(), &input)?;
    loaded
        .keyring
        .encrypt_stream(
            &CipherConfig::default(),
            args.context.as_bytes(),
            input,
            &mut output,
        )
        .with_context(|| format!("cannot seal {}", input_name(args.input.as_deref())))?;
    output.commit(args.output.as_deref())
}

fn open(args: &KeyringIo) -> Result<()> {
    let loaded = load_keyring(&args.keyring)?;
    let name = input_name(args.input.as_deref());
    let mut input = open_input(args.input.as_deref())?;
    // Check the header (key id, key, commitment) before creating the output, so a wrong key
    // never creates or truncates it.
    let mut header = vec![0u8; Keyring::HEADER_LEN];
    input
        .read_exact(&mut header)
        .with_context(|| format!("cannot open {name}: too short to be a sealed file"))?;
    let keyring = &loaded.keyring;
    let context = args.context.as_bytes();
    keyring
        .check_stream_header(context, &header)
        .map_err(|e| open_error(&name, e))?;
    let mut output = create_output(args.output.as_deref(), &input)?;
    // On failure the output is dropped uncommitted: no partial plaintext under the name.
    keyring
        .decrypt_stream(
            ALL_CORES,
            context,
            io::Cursor::new(header).chain(input),
            &mut output,
        )
        .map_err(|e| open_error(&name, e))?;
    output.commit(args.output.as_deref())
}

/// Names what most likely went wrong when `name` does not open.
fn open_error(name: &str, e: crypto_at_rest::Error) -> anyhow::Error {
    use crypto_at_rest::{Error, Stage};
    let what = match e {
        Error::Io(_) => format!("cannot open {name}"),
        Error::Authentication(Stage::DataKey) => {
            format!("cannot open {name}: wrong keyring, or the file's header is damaged")
        }
        Error::UnknownKeyId(_) => format!("cannot open {name}: the keyring lacks its key"),
        Error::InvalidHeader(_) | Error::UnknownVersion(_) => {
            format!("cannot open {name}: not a hostguard stream, or its header is damaged")
        }
        _ => format!("cannot open {name}: wrong --context, or the file is damaged or truncated"),
    };
    anyhow::Error::new(e).context(what)
}

/// First line of the file that records a rotation not finished yet.
const ROTATION_MAGIC: &str = "hostguard-rotation v1";

/// `KEYRING.rotating`: written before the new key is saved, removed once every file is
/// re-wrapped, so a rerun after a failure or a crash resumes under the same key.
fn rotation_state_path(keyring: &Path) -> PathBuf {
    let mut name = keyring.as_os_str().to_owned();
    name.push(".rotating");
    PathBuf::from(name)
}

/// The key id of a pending rotation, if `path` records one.
fn pending_rotation(path: &Path) -> Result<Option<KeyId>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut lines = text.lines();
    let id = match (
        lines.next(),
        lines.next().and_then(|l| l.strip_prefix("key ")),
    ) {
        (Some(ROTATION_MAGIC), Some(id)) => id.parse().ok(),
        _ => None,
    };
    let id = id.with_context(|| {
        format!(
            "{} is not a rotation record; remove it to start a new rotation",
            path.display()
        )
    })?;
    Ok(Some(KeyId(id)))
}

fn rotate(args: &KeyringArgs, files: &[PathBuf]) -> Result<()> {
    let Some(path) = &args.keyring else {
        bail!("rotate needs --keyring FILE (it writes the new key there)");
    };
    let mut loaded = load_keyring(args)?;
    let state = rotation_state_path(path);
    let pending = pending_rotation(&state)?;
    let id = match pending {
        // A previous attempt saved this key and left files to do: finish under it.
        Some(id) if loaded.keyring.primary() == id => {
            eprintln!(
                "keyring {}: resuming the rotation to key id {id}",
                path.display()
            );
            id
        }
        // No rotation pending (or one killed before its key was saved): add a key.
        _ => {
            let highest = loaded.keyring.ids().last().map_or(0, |id| id.0);
            let id = KeyId(highest.checked_add(1).context("no key id left")?);
            let mut record = AtomicOutput::create(&state)
                .with_context(|| format!("cannot create {}", state.display()))?;
            record.write_all(format!("{ROTATION_MAGIC}\nkey {id}\n").as_bytes())?;
            record
                .commit()
                .with_context(|| format!("cannot write {}", state.display()))?;
            loaded.keyring.rotate(id, SecretKey::generate()?)?;
            save_keyring(
                &loaded.keyring,
                loaded.passphrase.as_deref().map(String::as_str),
                path,
            )?;
            eprintln!("keyring {}: new primary key id {id}", path.display());
            id
        }
    };
    let mut failed = Vec::new();
    for file in files {
        if let Err(e) = rewrap_file(&loaded.keyring, file) {
            eprintln!("crypt: cannot re-wrap {}: {e:#}", file.display());
            failed.push(file.display().to_string());
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} files not re-wrapped under key id {id}: {}; fix them and rerun the same \
             command to finish (it adds no new key while {} exists)",
            failed.len(),
            files.len(),
            failed.join(", "),
            state.display()
        );
    }
    match std::fs::remove_file(&state) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", state.display()))
        }
        _ => Ok(()),
    }
}

/// Re-wraps the data key in `path`'s header under the primary key, rewriting only the header.
///
/// The header (126 bytes at offset 0) is replaced by one `pwrite`: it lies in the file's first
/// page and first 512-byte sector, so neither a killed process nor a power cut leaves half of
/// it written (the sector-atomicity PostgreSQL relies on for `pg_control`). The file then opens
/// under the old key or the new one, never neither.
fn rewrap_file(keyring: &Keyring, path: &Path) -> Result<()> {
    use std::os::unix::fs::FileExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let mut header = vec![0u8; Keyring::HEADER_LEN];
    file.read_exact_at(&mut header, 0)
        .context("too short to be a sealed file")?;
    if Keyring::key_id_of(&header)? == keyring.primary() {
        eprintln!(
            "{}: already under key {}",
            path.display(),
            keyring.primary()
        );
        return Ok(());
    }
    let old = header.clone();
    let before = keyring.rewrap(&mut header)?;
    let written = file.write_at(&header, 0)?;
    if written != header.len() {
        // Not seen on a regular file; put the old header back rather than leave a mix.
        file.write_all_at(&old[..written], 0)?;
        bail!(
            "short write of the header ({written} of {} bytes)",
            header.len()
        );
    }
    file.sync_data()?;
    eprintln!("{}: key {before} -> {}", path.display(), keyring.primary());
    Ok(())
}
