//! `cargo run -p ccci-nix --example units -- REPO [REV] [FILE...]`: print the units JSON.
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let repo = args.first().map(String::as_str).unwrap_or(".");
    let rev = args.get(1).map(String::as_str).unwrap_or("HEAD");
    let files: Vec<String> = args.iter().skip(2).cloned().collect();
    let declared = ccci_nix::units_report(
        Path::new(repo),
        rev,
        if files.is_empty() { None } else { Some(&files) },
    )?;
    println!("{}", declared.to_json()?);
    Ok(())
}
