//! The live HAProxy driver.
