//! TLS client configurations for etlhost's network clients (the Bolt client, the PostgreSQL
//! source), through rustls with the ring provider.
//!
//! Three checks, as libpq's `sslmode` and the Neo4j drivers name them:
//! - [`Check::Nothing`]: encrypted, any certificate accepted (`require`, `+ssc`). The handshake
//!   signatures are still checked, so the session key belongs to whoever holds the certificate;
//! - [`Check::Chain`]: the chain must lead to a trusted root; the name is not compared
//!   (`verify-ca`);
//! - [`Check::ChainAndName`]: the chain and the host name (`verify-full`, `+s`).
//!
//! The provider is always passed explicitly, never taken from the process: once another crate
//! in the build enables rustls's aws-lc-rs feature next to ring, rustls cannot pick a default,
//! and `ClientConfig::builder()` would panic.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{VerifierBuilderError, WebPkiServerVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// The crypto provider of every configuration made here.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// What a client checks of the server's certificate.
pub enum Check {
    Nothing,
    Chain {
        roots: RootCertStore,
        /// Told the names of a certificate whose chain passed but whose names do not include
        /// the host connected to (for a second client that can only check names).
        seen: Option<Arc<PresentedName>>,
    },
    ChainAndName(RootCertStore),
}

/// Why a configuration could not be made.
#[derive(Debug)]
pub enum SetupError {
    /// The provider offers no protocol version rustls accepts.
    Protocol(rustls::Error),
    /// The roots cannot make a verifier (none usable).
    Roots(VerifierBuilderError),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Protocol(e) => write!(f, "{e}"),
            SetupError::Roots(e) => write!(f, "{e}"),
        }
    }
}

/// A client configuration (no client certificate) that checks what `check` says.
pub fn client_config(check: Check) -> Result<ClientConfig, SetupError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(SetupError::Protocol)?;
    let verifier: Arc<dyn ServerCertVerifier> = match check {
        Check::Nothing => Arc::new(AcceptAny(provider())),
        Check::Chain { roots, seen } => Arc::new(ChainOnly {
            inner: webpki(roots)?,
            seen,
        }),
        Check::ChainAndName(roots) => webpki(roots)?,
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

fn webpki(roots: RootCertStore) -> Result<Arc<WebPkiServerVerifier>, SetupError> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(SetupError::Roots)
}

/// Why a CA file gave no roots; each client words it in its own options' terms.
#[derive(Debug)]
pub enum CaFileError {
    Read(std::io::Error),
    NotPem(rustls::pki_types::pem::Error),
    Unusable(rustls::Error),
    Empty,
}

/// The certificates of a PEM file as trust roots; every one must be usable, and there must be
/// at least one.
pub fn ca_file(path: &Path) -> Result<RootCertStore, CaFileError> {
    let bytes = std::fs::read(path).map_err(CaFileError::Read)?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(CaFileError::NotPem)?;
        roots.add(cert).map_err(CaFileError::Unusable)?;
    }
    if roots.is_empty() {
        return Err(CaFileError::Empty);
    }
    Ok(roots)
}

/// The operating system's trusted roots, and the first error met finding them (an empty store
/// with it says why).
pub fn system_roots() -> (RootCertStore, Option<String>) {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    (roots, found.errors.first().map(|e| e.to_string()))
}

/// A DNS name the server's certificate was issued for, as the chain-only check last saw it.
#[derive(Debug, Default)]
pub struct PresentedName(Mutex<Option<String>>);

impl PresentedName {
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, presented: &[String]) {
        // webpki names them as `DnsName("db.example.com")`; an exact name is preferred to a
        // wildcard, which a name of its domain stands for.
        let names: Vec<&str> = presented
            .iter()
            .filter_map(|p| p.strip_prefix("DnsName(\"")?.strip_suffix("\")"))
            .collect();
        let name = names
            .iter()
            .find(|n| !n.contains('*'))
            .map(|n| n.to_string())
            .or_else(|| {
                names
                    .iter()
                    .find_map(|n| n.strip_prefix("*.").map(|d| format!("etlhost.{d}")))
            });
        if name.is_some() {
            *self.0.lock().unwrap_or_else(|e| e.into_inner()) = name;
        }
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the name the certificate is for is not
/// compared with the host connected to.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
    seen: Option<Arc<PresentedName>>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain before the name: a name error means the chain was good.
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                presented,
                ..
            })) => {
                if let Some(seen) = &self.seen {
                    seen.set(&presented);
                }
                Ok(ServerCertVerified::assertion())
            }
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName)) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Any certificate is accepted; the handshake signatures are still checked.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_presented_name_prefers_an_exact_one() {
        let seen = PresentedName::default();
        seen.set(&["IpAddress(10.0.0.1)".into()]);
        assert_eq!(seen.get(), None);
        seen.set(&[
            "DnsName(\"*.db.test\")".into(),
            "DnsName(\"a.db.test\")".into(),
        ]);
        assert_eq!(seen.get().as_deref(), Some("a.db.test"));
        seen.set(&["DnsName(\"*.db.test\")".into()]);
        assert_eq!(seen.get().as_deref(), Some("etlhost.db.test"));
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("etlhost-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "hello").unwrap();
        assert!(matches!(ca_file(&empty), Err(CaFileError::Empty)));
        assert!(matches!(
            ca_file(&dir.join("absent.pem")),
            Err(CaFileError::Read(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_check_makes_a_configuration() {
        assert!(client_config(Check::Nothing).is_ok());
        // An empty store cannot make a verifier: refused, not a verifier that trusts nothing.
        assert!(matches!(
            client_config(Check::ChainAndName(RootCertStore::empty())),
            Err(SetupError::Roots(_))
        ));
    }
}
