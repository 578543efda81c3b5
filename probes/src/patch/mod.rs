//! The live patcher (see issue: patcher).
