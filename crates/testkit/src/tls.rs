//! A self-signed certificate for `localhost`, written as PEM files, for tests of TLS listeners.

use std::path::{Path, PathBuf};

/// PEM files of a self-signed certificate for `localhost` and its key, and the certificate's
/// PEM text (for a client to trust).
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// The certificate file.
    pub certificate: PathBuf,
    /// The private key file.
    pub private_key: PathBuf,
    /// The certificate, PEM.
    pub certificate_pem: String,
}

/// Generates a key pair and a certificate for `localhost`, written as `<name>.crt` and
/// `<name>.key` in `dir`.
///
/// # Panics
/// When the files cannot be written (a test's scratch directory).
pub fn self_signed(dir: &Path, name: &str) -> SelfSigned {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("a self-signed certificate");
    let files = SelfSigned {
        certificate: dir.join(format!("{name}.crt")),
        private_key: dir.join(format!("{name}.key")),
        certificate_pem: certified.cert.pem(),
    };
    std::fs::write(&files.certificate, &files.certificate_pem).expect("writing the certificate");
    std::fs::write(&files.private_key, certified.signing_key.serialize_pem())
        .expect("writing the key");
    files
}

impl SelfSigned {
    /// An HTTP client trusting this certificate, with `localhost` resolved to
    /// loopback port `port`: `https://localhost:{port}/…` reaches the listener under test.
    ///
    /// # Panics
    /// When the certificate does not parse (it was generated here).
    pub fn client(&self, port: u16) -> reqwest::Client {
        let trusted = reqwest::Certificate::from_pem(self.certificate_pem.as_bytes())
            .expect("the generated certificate parses");
        reqwest::Client::builder()
            .add_root_certificate(trusted)
            .resolve("localhost", ([127, 0, 0, 1], port).into())
            .build()
            .expect("an HTTPS client")
    }
}
