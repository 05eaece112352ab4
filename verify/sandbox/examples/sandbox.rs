//! Manual driver: `cargo run -p ccci-sandbox --example sandbox -- up|down|purge|status|deploy`
//! (as root). Prints timings; the product CLI is `ccci-verify sandbox ...`.

use std::time::Instant;

#[tokio::main]
async fn main() {
    let cmd = std::env::args().nth(1).unwrap_or_else(|| "status".into());
    let cfg = ccci_sandbox::SandboxConfig::from_env();
    let t = Instant::now();
    let res: Result<String, ccci_sandbox::SandboxError> = match cmd.as_str() {
        "up" => ccci_sandbox::up(&cfg)
            .await
            .map(|i| serde_json::to_string_pretty(&i).unwrap_or_default()),
        "down" => ccci_sandbox::down(&cfg).await.map(|_| "down".into()),
        "purge" => ccci_sandbox::down_with(&cfg, true)
            .await
            .map(|_| "purged".into()),
        "status" => ccci_sandbox::status(&cfg).await.map(|i| match i {
            Some(i) => serde_json::to_string_pretty(&i).unwrap_or_default(),
            None => "not up".into(),
        }),
        other => {
            eprintln!("unknown command {other}");
            std::process::exit(2);
        }
    };
    match res {
        Ok(s) => println!("{s}\n{cmd} took {:.1} s", t.elapsed().as_secs_f64()),
        Err(e) => {
            eprintln!(
                "error: {e}\n{cmd} failed after {:.1} s",
                t.elapsed().as_secs_f64()
            );
            std::process::exit(1);
        }
    }
}
