//! refreshd demo: a loopback development token issuer and a daemon rotating its JWTs into files.

pub mod issuer;
