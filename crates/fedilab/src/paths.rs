//! Where fedilab keeps state on the host: the XDG data directory.

use std::path::PathBuf;

use anyhow::Context;

/// `FEDILAB_DATA_DIR`, else `$XDG_DATA_HOME/fedilab`, else
/// `~/.local/share/fedilab`.
///
/// # Errors
/// When none of those can be determined (no `HOME`).
pub fn data_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("FEDILAB_DATA_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("fedilab"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("cannot find a data directory: set FEDILAB_DATA_DIR or HOME")?;
    Ok(PathBuf::from(home).join(".local/share/fedilab"))
}
