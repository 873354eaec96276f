//! Keyrings: text form, files, environment variables, passphrases, redaction.

use crypto_at_rest::{Error, Kdf, KeyId, Keyring, PassphraseKdf, SecretKey, Stage};

#[test]
fn text_form_round_trips_and_rejects_mistakes() {
    let mut keys = Keyring::generate(KeyId(1)).unwrap();
    keys.rotate_generated().unwrap();
    let sealed = keys.seal(b"n", b"data").unwrap();
    let text = keys.to_text();
    assert!(text.starts_with("hostguard-keyring v1\nprimary 2\nkey 1 "));
    let parsed = Keyring::parse(&text).unwrap();
    assert_eq!(parsed.primary(), KeyId(2));
    assert_eq!(parsed.ids().collect::<Vec<_>>(), [KeyId(1), KeyId(2)]);
    assert_eq!(parsed.open(b"n", &sealed).unwrap(), b"data");
    // `;` separates lines too (environment variables).
    let one_line = text.trim_end().replace('\n', ";");
    assert_eq!(
        Keyring::parse(&one_line)
            .unwrap()
            .open(b"n", &sealed)
            .unwrap(),
        b"data"
    );

    let key = "00".repeat(32);
    for (bad, why) in [
        (String::new(), "first line"),
        ("hostguard-keyring v1\nkey 1 00".to_string(), "hex"),
        (
            "hostguard-keyring v1\nkey 1 ".to_string() + &key,
            "no primary",
        ),
        (
            format!("hostguard-keyring v1\nprimary 2\nkey 1 {key}"),
            "has no key line",
        ),
        (
            format!("hostguard-keyring v1\nprimary 1\nkey 1 {key}\nkey 1 {key}"),
            "twice",
        ),
        (
            format!("hostguard-keyring v1\nprimary 1\nkey x {key}"),
            "bad key id",
        ),
        (
            format!("hostguard-keyring v1\nprimary 1\nsecret {key}"),
            "unexpected line",
        ),
    ] {
        match Keyring::parse(&bad) {
            Err(Error::InvalidKeyring(msg)) => assert!(msg.contains(why), "{msg:?} lacks {why:?}"),
            other => panic!("{bad:?} gave {other:?}"),
        }
    }
}

#[test]
fn files_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    let keys = Keyring::generate(KeyId(5)).unwrap();
    keys.save(&path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let sealed = keys.seal(b"", b"x").unwrap();
    assert_eq!(
        Keyring::load(&path).unwrap().open(b"", &sealed).unwrap(),
        b"x"
    );
    assert!(matches!(
        Keyring::load(&dir.path().join("missing")),
        Err(Error::Io(_))
    ));
}

/// Runs in a child process that has the variables set (edition 2024 makes `std::env::set_var`
/// unsafe, and this workspace forbids unsafe code): the parent spawns this very test.
#[test]
fn environment_variable() {
    const VAR: &str = "HOSTGUARD_TEST_KEYRING";
    const SEALED: &str = "HOSTGUARD_TEST_SEALED";
    if let (Ok(_), Ok(sealed)) = (std::env::var(VAR), std::env::var(SEALED)) {
        let keys = Keyring::from_env(VAR).unwrap();
        let sealed = hex::decode(sealed).unwrap();
        assert_eq!(keys.open(b"", &sealed).unwrap(), b"from env");
        return;
    }
    assert!(matches!(
        Keyring::from_env("HOSTGUARD_TEST_UNSET_VAR"),
        Err(Error::InvalidKeyring(_))
    ));
    let keys = Keyring::generate(KeyId(8)).unwrap();
    let sealed = keys.seal(b"", b"from env").unwrap();
    for (text, should_open) in [
        (keys.to_text().replace('\n', ";"), true),
        (
            Keyring::generate(KeyId(8)).unwrap().to_text().to_string(),
            false,
        ),
    ] {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "environment_variable", "--test-threads=1"])
            .env(VAR, text)
            .env(SEALED, hex::encode(&sealed))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert_eq!(status.success(), should_open);
    }
}

#[test]
fn passphrases_with_argon2id_and_scrypt() {
    for kdf in [Kdf::ARGON2ID_OWASP_2023, Kdf::SCRYPT_OWASP_2023] {
        let setting = PassphraseKdf::generate(kdf).unwrap();
        let stored: PassphraseKdf = setting.to_string().parse().unwrap();
        assert_eq!(stored.kdf(), kdf);
        let a = Keyring::from_passphrase(KeyId(1), b"correct horse", &setting).unwrap();
        let b = Keyring::from_passphrase(KeyId(1), b"correct horse", &stored).unwrap();
        let sealed = a.seal(b"", b"pp").unwrap();
        assert_eq!(b.open(b"", &sealed).unwrap(), b"pp");
        let wrong = Keyring::from_passphrase(KeyId(1), b"wrong horse", &stored).unwrap();
        assert!(matches!(
            wrong.open(b"", &sealed),
            Err(Error::Authentication(Stage::DataKey))
        ));
    }
    assert_eq!(
        PassphraseKdf::generate(Kdf::ARGON2ID_OWASP_2023)
            .unwrap()
            .to_string()
            .len(),
        "argon2id m=19456 t=2 p=1 salt=".len() + 32
    );
    for bad in [
        "argon2id m=19456 t=2 salt=00112233445566778899aabbccddeeff",
        "argon2id m=19456 t=2 p=1",
        "scrypt ln=40 r=8 p=1 salt=00112233445566778899aabbccddeeff",
        "bcrypt cost=12 salt=00112233445566778899aabbccddeeff",
        "argon2id m=1 t=2 p=1 salt=00112233445566778899aabbccddeeff",
    ] {
        assert!(bad.parse::<PassphraseKdf>().is_err(), "{bad} parsed");
    }
}

#[test]
fn passphrase_sealed_keyring_files() {
    let mut keys = Keyring::generate(KeyId(1)).unwrap();
    keys.rotate_generated().unwrap();
    let sealed_obj = keys.seal(b"", b"inside").unwrap();
    assert!(matches!(
        keys.seal_with_passphrase(b"", Kdf::SCRYPT_OWASP_2023),
        Err(Error::InvalidKeyring(msg)) if msg.contains("empty passphrase")
    ));
    let file = keys
        .seal_with_passphrase(b"pw", Kdf::SCRYPT_OWASP_2023)
        .unwrap();
    assert!(file.starts_with("hostguard-keyring-sealed v1\nscrypt ln=17 r=8 p=1 salt="));
    assert!(
        !file.contains(&keys.to_text()[40..]),
        "key text leaked into the sealed file"
    );
    let opened = Keyring::open_with_passphrase(&file, b"pw").unwrap();
    assert_eq!(opened.primary(), KeyId(2));
    assert_eq!(opened.open(b"", &sealed_obj).unwrap(), b"inside");
    assert!(matches!(
        Keyring::open_with_passphrase(&file, b"pW"),
        Err(Error::Authentication(Stage::KeyringFile))
    ));
    let mut damaged = file.clone().into_bytes();
    let at = damaged.len() - 10;
    damaged[at] = if damaged[at] == b'0' { b'1' } else { b'0' };
    assert!(matches!(
        Keyring::open_with_passphrase(std::str::from_utf8(&damaged).unwrap(), b"pw"),
        Err(Error::Authentication(Stage::KeyringFile))
    ));
}

#[test]
fn key_bytes_never_show_in_debug() {
    let key = SecretKey::from_bytes([0xab; 32]);
    assert_eq!(format!("{key:?}"), "SecretKey([redacted])");
    let keys = Keyring::new(KeyId(3), key);
    let debug = format!("{keys:?}");
    assert!(!debug.contains("ab") && !debug.contains("171"), "{debug}");
    assert!(debug.contains("primary: KeyId(3)"));
}

#[test]
fn kdf_lines_demanding_too_much_memory_or_work_are_refused() {
    let salt = "00112233445566778899aabbccddeeff";
    for line in [
        "scrypt ln=22 r=32 p=16",
        "scrypt ln=22 r=9 p=1",
        "scrypt ln=21 r=8 p=16",
    ] {
        let err = format!("{line} salt={salt}")
            .parse::<PassphraseKdf>()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(_)), "{line}: {err}");
    }
    for line in ["scrypt ln=17 r=8 p=1", "scrypt ln=22 r=8 p=1"] {
        assert!(
            format!("{line} salt={salt}")
                .parse::<PassphraseKdf>()
                .is_ok(),
            "{line}"
        );
    }
}

#[test]
fn save_replaces_the_file_whole_and_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring.txt");
    std::fs::write(&path, "old contents").unwrap();
    let ring = Keyring::generate(KeyId(1)).unwrap();
    ring.save(&path).unwrap();
    assert_eq!(Keyring::load(&path).unwrap().to_text(), ring.to_text());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    ring.save_sealed(&path, b"pass", Kdf::SCRYPT_OWASP_2023)
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(Keyring::is_sealed_file(&text));
    assert_eq!(
        Keyring::open_with_passphrase(&text, b"pass")
            .unwrap()
            .to_text(),
        ring.to_text()
    );
    // Only the keyring remains: no temporary files left beside it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}
