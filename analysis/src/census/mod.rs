//! Call-site census of ELF binaries (see issue: census).
