//! `cargo xtask outside-user`: builds and runs the README's library quick start
//! as an outside user would, in a fresh crate that depends on `atlas` by path
//! and on `ndarray`, `tokio` and `tempfile` as `cargo add` picks them today.
//!
//! This catches what the in-workspace doctest cannot: the workspace pins its own
//! `ndarray`, so a quick start that only compiles with that pin (and not with
//! the release a user gets from `cargo add ndarray`) passes every other test.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The first fenced `rust` block after the "Library quick start" heading.
pub fn quick_start(readme: &str) -> Result<String> {
    let start = readme
        .find("## Library quick start")
        .context("README.md has no \"## Library quick start\" section")?;
    let rest = &readme[start..];
    let open = rest
        .find("```rust\n")
        .context("the quick start has no ```rust block")?;
    let body = &rest[open + "```rust\n".len()..];
    let close = body.find("\n```").context("unterminated ```rust block")?;
    Ok(body[..=close].to_owned())
}

fn cargo(dir: &Path, args: &[&str], target_dir: &Path) -> Result<()> {
    eprintln!("==> (in {}) cargo {}", dir.display(), args.join(" "));
    let status = Command::new("cargo")
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir)
        // The outside crate is not under the workspace's toolchain file's
        // directory tree in spirit; keep the same toolchain anyway.
        .status()
        .with_context(|| format!("cannot run cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!(
            "cargo {} failed ({status}) in {}",
            args.join(" "),
            dir.display()
        );
    }
    Ok(())
}

/// Copies the template, adds the dependencies with `cargo add`, writes the
/// README's quick start as `main.rs`, then builds and runs it.
pub fn run(root: &Path) -> Result<()> {
    let template = root.join("xtask/outside-user");
    let dir = root.join("target/outside-user");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir.join("src"))?;
    let manifest = std::fs::read_to_string(template.join("Cargo.toml"))?;
    let atlas = root.join("crates/atlas");
    let manifest = manifest.replace("@ATLAS_PATH@", &atlas.display().to_string());
    std::fs::write(dir.join("Cargo.toml"), manifest)?;
    // Start from the workspace's lock file so every other dependency resolves
    // to the versions already built; `cargo add` then picks ndarray afresh.
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock"))?;
    let readme = std::fs::read_to_string(root.join("README.md"))?;
    std::fs::write(dir.join("src/main.rs"), quick_start(&readme)?)?;
    let target_dir = root.join("target/outside-user-target");
    cargo(&dir, &["add", "ndarray"], &target_dir)?;
    cargo(
        &dir,
        &["add", "tokio", "--features", "macros,rt-multi-thread"],
        &target_dir,
    )?;
    cargo(&dir, &["add", "tempfile"], &target_dir)?;
    cargo(&dir, &["run", "--quiet"], &target_dir)?;
    eprintln!("    the README quick start builds and runs against today's ndarray");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::quick_start;

    #[test]
    fn finds_the_first_rust_block_of_the_quick_start() {
        let readme = "# X\n```rust\nnot this\n```\n## Library quick start\n\ntext\n```rust\nfn main() {}\n```\n```rust\nlater\n```\n";
        assert_eq!(quick_start(readme).unwrap(), "fn main() {}\n");
        assert!(quick_start("# no section").is_err());
    }
}
