//! Upstream faults: a proxy between the bridge and its IMAP server (tests/common/faulty_proxy.rs)
//! that resets, closes, stalls, truncates and slows down connections at chosen places. These
//! tests check the proxy itself.

mod common;

use std::time::Duration;

use common::faulty_proxy::{Dir, Fault, FaultyProxy, Kind, Place, Stalled};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An upstream that echoes what it reads, for the proxy's own checks.
async fn echo_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 || socket.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// The reuse check can fail: a client that writes again on a connection after giving up on a
/// stalled answer is caught, one that drops the connection is not.
#[tokio::test]
async fn the_proxy_catches_a_connection_used_after_its_client_gave_up() {
    let upstream = echo_server().await;
    let proxy = FaultyProxy::start(upstream, Duration::from_millis(300)).await;
    let stall = Fault {
        kind: Kind::Stall {
            which: Stalled::Trigger,
            duration: Duration::from_secs(1),
        },
        place: Place::Random {
            dir: Dir::Up,
            after: 0,
        },
    };
    for reuse in [true, false] {
        proxy.arm(stall);
        let mut conn = tokio::net::TcpStream::connect(proxy.addr())
            .await
            .expect("connect");
        conn.write_all(b"a1 NOOP\r\n").await.expect("write");
        let mut buf = [0u8; 64];
        let answer = tokio::time::timeout(Duration::from_millis(200), conn.read(&mut buf)).await;
        assert!(answer.is_err(), "the stall holds the command back");
        tokio::time::sleep(Duration::from_millis(300)).await;
        if reuse {
            conn.write_all(b"a2 NOOP\r\n").await.expect("write");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(conn);
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let report = proxy.report();
    assert_eq!(report.injections.len(), 2);
    assert!(report.injections.iter().all(|i| i.watched));
    assert_eq!(report.reuses.len(), 1, "{:?}", report.reuses);
    assert_eq!(report.reuses[0].conn, report.injections[0].conn);
    assert!(report.reuses[0].after >= Duration::from_millis(300));
}

/// Resets reach the client as RST, truncations as a clean end after part of the data.
#[tokio::test]
async fn the_proxy_resets_and_truncates_where_it_is_told() {
    let upstream = echo_server().await;
    let proxy = FaultyProxy::start(upstream, Duration::from_secs(5)).await;
    for (kind, expect_reset) in [(Kind::Reset, true), (Kind::Truncate, false)] {
        proxy.arm(Fault {
            kind,
            place: Place::Random {
                dir: Dir::Down,
                after: 3,
            },
        });
        let mut conn = tokio::net::TcpStream::connect(proxy.addr())
            .await
            .expect("connect");
        conn.write_all(b"0123456789").await.expect("write");
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        let end = loop {
            match conn.read(&mut buf).await {
                Ok(0) => break None,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break Some(e.kind()),
            }
        };
        assert_eq!(got, b"012", "{kind:?}");
        assert_eq!(
            end,
            expect_reset.then_some(std::io::ErrorKind::ConnectionReset),
            "{kind:?}"
        );
    }
    let by_kind = proxy.report().by_kind();
    assert_eq!(by_kind.get("reset"), Some(&1));
    assert_eq!(by_kind.get("truncate"), Some(&1));
}
