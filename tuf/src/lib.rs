//! seal-tuf: the TUF core of Seal in Notary's dialect.
#![forbid(unsafe_code)]
