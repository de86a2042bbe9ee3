//! A scripted MQTT 3.1.1 broker for tests of clients: it speaks just enough of the protocol
//! (CONNECT/CONNACK, PUBLISH, PUBACK, PINGREQ/PINGRESP, DISCONNECT) and lets the test decide
//! what a real broker decides: whether a session is present, when (and whether) a publish is
//! acknowledged, when a connection drops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// What the peer saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// A client connected; connections are numbered from 0.
    Connected {
        /// The connection's number.
        conn: usize,
        /// The client's clean-session flag.
        clean_session: bool,
    },
    /// A client published.
    Publish {
        /// The connection it came on.
        conn: usize,
        /// Its packet id (0 at QoS 0).
        pkid: u16,
        /// Its topic.
        topic: String,
        /// Its payload.
        payload: Vec<u8>,
    },
}

enum Command {
    Ack(u16),
    Drop,
}

/// The scripted broker, listening on 127.0.0.1.
pub struct MqttPeer {
    /// Its port.
    pub port: u16,
    events: mpsc::UnboundedReceiver<PeerEvent>,
    connections: Arc<Mutex<HashMap<usize, mpsc::UnboundedSender<Command>>>>,
}

impl MqttPeer {
    /// Listens on a free port; every CONNACK says `session_present`.
    pub async fn start(session_present: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the MQTT peer");
        let port = listener.local_addr().expect("bound").port();
        let (events, receiver) = mpsc::unbounded_channel();
        let connections: Arc<Mutex<HashMap<usize, mpsc::UnboundedSender<Command>>>> =
            Arc::default();
        let registry = Arc::clone(&connections);
        tokio::spawn(async move {
            let mut next = 0;
            while let Ok((stream, _)) = listener.accept().await {
                let (commands, inbox) = mpsc::unbounded_channel();
                registry.lock().expect("peer lock").insert(next, commands);
                tokio::spawn(serve(stream, next, session_present, events.clone(), inbox));
                next += 1;
            }
        });
        Self {
            port,
            events: receiver,
            connections,
        }
    }

    /// The next thing the peer saw.
    ///
    /// # Panics
    /// When the peer stopped.
    pub async fn next(&mut self) -> PeerEvent {
        self.events.recv().await.expect("the MQTT peer runs")
    }

    /// The next publish, skipping connections.
    pub async fn next_publish(&mut self) -> (usize, u16, String, Vec<u8>) {
        loop {
            if let PeerEvent::Publish {
                conn,
                pkid,
                topic,
                payload,
            } = self.next().await
            {
                return (conn, pkid, topic, payload);
            }
        }
    }

    fn command(&self, conn: usize, command: Command) {
        if let Some(connection) = self.connections.lock().expect("peer lock").get(&conn) {
            let _ = connection.send(command);
        }
    }

    /// Acknowledges packet `pkid` on connection `conn`.
    pub fn ack(&self, conn: usize, pkid: u16) {
        self.command(conn, Command::Ack(pkid));
    }

    /// Closes connection `conn` without a word, as a crashed broker or a cut cable would.
    pub fn drop_connection(&self, conn: usize) {
        self.command(conn, Command::Drop);
    }
}

/// Reads one packet: its first byte and its body.
async fn read_packet(reader: &mut OwnedReadHalf) -> Option<(u8, Vec<u8>)> {
    let first = reader.read_u8().await.ok()?;
    let mut length = 0usize;
    for shift in (0..28).step_by(7) {
        let byte = reader.read_u8().await.ok()?;
        length |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.ok()?;
    Some((first, body))
}

fn publish_event(conn: usize, flags: u8, body: &[u8]) -> Option<PeerEvent> {
    let topic_len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let topic = String::from_utf8(body.get(2..2 + topic_len)?.to_vec()).ok()?;
    let mut rest = &body[2 + topic_len..];
    let mut pkid = 0;
    if (flags >> 1) & 3 > 0 {
        pkid = u16::from_be_bytes([*rest.first()?, *rest.get(1)?]);
        rest = &rest[2..];
    }
    Some(PeerEvent::Publish {
        conn,
        pkid,
        topic,
        payload: rest.to_vec(),
    })
}

async fn serve(
    stream: TcpStream,
    conn: usize,
    session_present: bool,
    events: mpsc::UnboundedSender<PeerEvent>,
    mut inbox: mpsc::UnboundedReceiver<Command>,
) {
    let (mut reader, mut writer) = stream.into_split();
    let Some((0x10, connect)) = read_packet(&mut reader).await else {
        return;
    };
    // Protocol name (2 + 4 bytes), level, then the connect flags.
    let clean_session = connect.get(7).is_some_and(|flags| flags & 0x02 != 0);
    let _ = events.send(PeerEvent::Connected {
        conn,
        clean_session,
    });
    if write(&mut writer, &[0x20, 0x02, u8::from(session_present), 0x00])
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            packet = read_packet(&mut reader) => match packet {
                Some((first, body)) if first >> 4 == 3 => {
                    if let Some(event) = publish_event(conn, first & 0x0f, &body) {
                        let _ = events.send(event);
                    }
                }
                Some((0xc0, _)) => {
                    if write(&mut writer, &[0xd0, 0x00]).await.is_err() {
                        return;
                    }
                }
                Some((0xe0, _)) | None => return,
                Some(_) => {}
            },
            command = inbox.recv() => match command {
                Some(Command::Ack(pkid)) => {
                    let [high, low] = pkid.to_be_bytes();
                    if write(&mut writer, &[0x40, 0x02, high, low]).await.is_err() {
                        return;
                    }
                }
                Some(Command::Drop) | None => return,
            },
        }
    }
}

async fn write(writer: &mut OwnedWriteHalf, bytes: &[u8]) -> std::io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}
