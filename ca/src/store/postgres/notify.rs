//! Hearing other replicas' commits: one connection of its own that
//! `LISTEN`s on [`COMMIT_CHANNEL`], reconnecting when it is lost.

use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio_postgres::AsyncMessage;

use super::url::Tls;
use super::COMMIT_CHANNEL;

/// Longest pause between two attempts to listen again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A counter that moves on every commit notification, and whenever
/// notifications may have been missed (the listening connection was lost
/// or is new). Starts the listener on `handle`; it stops when every
/// receiver is gone or the runtime shuts down.
pub(super) fn listen(
    handle: &Handle,
    config: tokio_postgres::Config,
    tls: Tls,
) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0);
    handle.spawn(async move {
        let mut backoff = Duration::from_millis(100);
        while !tx.is_closed() {
            match session(&config, tls.clone(), &tx).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => tracing::warn!(error = %e, "not listening for other replicas' commits; retrying"),
            }
            // Whatever was committed while nobody listened is unknown.
            tx.send_modify(|n| *n += 1);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    });
    rx
}

/// Listens until the connection ends.
async fn session(
    config: &tokio_postgres::Config,
    tls: Tls,
    tx: &watch::Sender<u64>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(tls).await?;
    let driver = async {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => tx.send_modify(|n| *n += 1),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    };
    tokio::pin!(driver);
    let listen = format!("LISTEN {COMMIT_CHANNEL}");
    tokio::select! {
        ended = &mut driver => return ended,
        listening = client.batch_execute(&listen) => listening?,
    }
    // Listening from now on; what came before is unknown.
    tx.send_modify(|n| *n += 1);
    let ended = driver.await;
    drop(client);
    ended
}
