//! An agency's system on Vigil's bus: the example of the README's "Agencies on NATS".
//!
//! `cargo run -p vigil --example agency_client -- unicef.nats-credentials.json ops-desk`
//! connects with the file `vigil agency credentials unicef` wrote and, for each broadcast,
//! prints it, answers with the receipt (so the centre counts it delivered) and, when the
//! broadcast asks for one, acknowledges it as `ops-desk`. The test
//! `services/vigil/tests/agency_nats.rs` runs this very code against a real centre.

use futures::StreamExt;
use serde_json::{Value, json};

/// Serves `count` broadcasts with the credentials in `file`, acknowledging as `by`.
pub async fn run(file: &str, by: &str, count: usize) -> Result<(), async_nats::Error> {
    let creds: Value = serde_json::from_slice(&std::fs::read(file)?)?;
    let field = |k: &str| creds[k].as_str().unwrap_or_default().to_owned();
    let client = async_nats::ConnectOptions::with_nkey(field("nkey_seed"))
        .custom_inbox_prefix(field("inbox_prefix"))
        .connect(field("nats_url"))
        .await?;
    let mut alerts = client.subscribe(field("alerts")).await?;
    client.flush().await?;
    for _ in 0..count {
        let Some(msg) = alerts.next().await else {
            break;
        };
        let alert: Value = serde_json::from_slice(&msg.payload)?;
        println!(
            "[{}] {}: {}",
            alert["severity"], alert["title"], alert["body"]
        );
        let receipt = json!({ "received": alert["broadcast"] });
        if let Some(reply) = msg.reply {
            client.publish(reply, receipt.to_string().into()).await?;
        }
        if alert["requires_ack"] == true {
            let ack = json!({ "broadcast": alert["broadcast"], "by": by });
            let answer = client
                .request(field("acks"), ack.to_string().into())
                .await?;
            println!("acknowledged: {}", String::from_utf8_lossy(&answer.payload));
        }
    }
    client.flush().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), async_nats::Error> {
    let mut args = std::env::args().skip(1);
    let file = args
        .next()
        .ok_or("usage: agency_client <credentials file> [by]")?;
    let by = args.next().unwrap_or_else(|| "ops-desk".to_owned());
    run(&file, &by, usize::MAX).await
}
