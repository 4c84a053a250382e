//! Keys for one purpose each, derived from the operator's secret, so that no two uses
//! (signing tokens, sealing credentials, naming keys, signing event ids) share a key.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// A key for one purpose from a secret: HMAC-SHA256(secret, label).
pub fn derive(secret: &[u8], label: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("any key length");
    mac.update(label);
    Zeroizing::new(mac.finalize().into_bytes().into())
}
