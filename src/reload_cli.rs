//! `outpost reload`: asks a node to re-read its config file (`POST /reload`, what SIGHUP
//! does) and prints what changed, or why nothing did.

use crate::admin_client::{AdminApi, AdminArgs};

/// Where the node is.
#[derive(clap::Args)]
pub struct ReloadArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// The lines to print: what changed, or that nothing did.
pub async fn run(a: ReloadArgs) -> Result<Vec<String>, String> {
    let answer = AdminApi::new(&a.admin)?.post("/reload", Vec::new()).await?;
    let changes: Vec<String> = answer["changes"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|l| l.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if changes.is_empty() {
        return Ok(vec![
            "reload: the config file is unchanged; nothing to apply".into(),
        ]);
    }
    let mut out = vec![format!("reloaded: {} change(s)", changes.len())];
    out.extend(changes.into_iter().map(|c| format!("  {c}")));
    Ok(out)
}
