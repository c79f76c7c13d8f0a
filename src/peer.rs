//! Who is on the other end of a connection, as the kernel records it: `SO_PEERCRED` for a
//! Unix stream, the socket diagnostics netlink (`NETLINK_SOCK_DIAG`) for a loopback TCP
//! connection.
//!
//! Never takes an identity from anything the client sends (a header, a claim, a hello): a
//! client can say anything, the kernel's record of who opened its socket it cannot change.
//! Never blocks long: one netlink round trip, with a receive timeout.

use std::net::{IpAddr, SocketAddr};

/// Who is on the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub pid: Option<i32>,
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("cannot read the credentials of the Unix socket's peer: {0}")]
    UnixCredentials(#[source] std::io::Error),
    #[error(
        "refusing to name the owner of {peer} (connected to {local}): not a loopback TCP connection; only a client on this host has an owner the kernel knows"
    )]
    NotLoopback { local: SocketAddr, peer: SocketAddr },
    #[error("socket diagnostics (netlink): cannot {op}: {source}")]
    Netlink {
        op: &'static str,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("socket diagnostics (netlink): the kernel did not answer within {}ms", .0.as_millis())]
    Timeout(std::time::Duration),
    #[error(
        "no TCP socket from {client} to {server} on this host: the client has closed it, or it is in another network namespace (or the kernel lacks tcp_diag)"
    )]
    NoSuchSocket {
        client: SocketAddr,
        server: SocketAddr,
    },
    #[error(
        "the client socket {client} is no longer open (TCP state {state}): the kernel no longer records who owned it"
    )]
    ClientGone {
        client: SocketAddr,
        state: &'static str,
    },
    #[error("socket diagnostics (netlink): the kernel refused the request: {0}")]
    Refused(nix::errno::Errno),
    #[error("socket diagnostics (netlink): unexpected answer from the kernel: {0}")]
    Malformed(&'static str),
    #[error("identifying the owner of a TCP connection needs Linux socket diagnostics")]
    Unsupported,
}

/// The peer of a Unix stream: `SO_PEERCRED` (`LOCAL_PEERCRED` on macOS), the credentials the
/// peer had when it connected.
pub fn of_unix(stream: &tokio::net::UnixStream) -> Result<Peer, PeerError> {
    let cred = stream.peer_cred().map_err(PeerError::UnixCredentials)?;
    Ok(Peer {
        uid: cred.uid(),
        pid: cred.pid(),
    })
}

/// The owner of the client socket of a loopback TCP connection we accepted: `local` and
/// `peer` are the accepted stream's own and peer addresses. The uid is the one that created
/// the client's socket (its fsuid at `socket()`); there is no pid, as a socket can be shared
/// by several processes. Refuses a connection unless both ends are loopback (127.0.0.0/8,
/// `::1`, or `::ffff:127.x`).
///
/// Blocking, but one netlink round trip (microseconds, bounded by a 1 s timeout): callers
/// may call it directly from a task.
pub fn of_tcp(local: SocketAddr, peer: SocketAddr) -> Result<Peer, PeerError> {
    let (server, client) = loopback_pair(local, peer)?;
    #[cfg(target_os = "linux")]
    {
        let uid = sock_diag::owner(client, server)?;
        Ok(Peer { uid, pid: None })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (server, client);
        Err(PeerError::Unsupported)
    }
}

/// Both ends in canonical form (a v4-mapped address as IPv4, as the kernel hashes it), when
/// both are loopback and of one family.
fn loopback_pair(
    local: SocketAddr,
    peer: SocketAddr,
) -> Result<(SocketAddr, SocketAddr), PeerError> {
    let canonical = |addr: SocketAddr| SocketAddr::new(addr.ip().to_canonical(), addr.port());
    let (server, client) = (canonical(local), canonical(peer));
    let loopback = |ip: IpAddr| ip.is_loopback();
    if loopback(server.ip()) && loopback(client.ip()) && server.is_ipv4() == client.is_ipv4() {
        Ok((server, client))
    } else {
        Err(PeerError::NotLoopback { local, peer })
    }
}

/// The netlink exchange, byte by byte after the Linux uapi headers (`linux/netlink.h`,
/// `linux/sock_diag.h`, `linux/inet_diag.h`). Netlink headers and the diag structures' plain
/// fields are in host byte order; ports and addresses in network byte order.
#[cfg(target_os = "linux")]
mod sock_diag {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::time::Duration;

    use nix::errno::Errno;
    use nix::sys::socket::{
        self, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, sockopt,
    };
    use nix::sys::time::TimeVal;

    use super::PeerError;

    const NLMSG_HDRLEN: usize = 16;
    const NLM_F_REQUEST: u16 = 0x1;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    /// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, then the sockid.
    const REQ_LEN: usize = 8 + SOCKID_LEN;
    /// `struct inet_diag_sockid`: sport, dport, src[16], dst[16], if, cookie[2].
    const SOCKID_LEN: usize = 48;
    /// `struct inet_diag_msg`: family, state, timer, retrans, the sockid, then expires,
    /// rqueue, wqueue, uid, inode.
    const MSG_LEN: usize = 4 + SOCKID_LEN + 20;
    const AF_INET: u8 = 2;
    const AF_INET6: u8 = 10;
    const IPPROTO_TCP: u8 = 6;
    /// Without a cookie the kernel matches on the 4-tuple alone (`sock_diag_check_cookie`).
    const INET_DIAG_NOCOOKIE: u32 = u32::MAX;
    const SEQ: u32 = 1;
    const ANSWER_WITHIN: Duration = Duration::from_secs(1);
    /// An exact lookup is answered by one message of a few hundred bytes.
    const DATAGRAM_LIMIT: usize = 8 * 1024;
    /// Each receive waits at most ANSWER_WITHIN, so this bounds the whole exchange.
    const RECEIVES_LIMIT: usize = 4;

    /// The uid that owns the TCP socket whose own address is `client` and whose remote is
    /// `server` (both canonical, loopback, one family).
    pub(super) fn owner(client: SocketAddr, server: SocketAddr) -> Result<u32, PeerError> {
        let fd = open()?;
        let request = request(client, server);
        let sent = socket::send(fd.as_raw_fd(), &request, MsgFlags::empty())
            .map_err(netlink("send the request"))?;
        if sent != request.len() {
            return Err(PeerError::Malformed("the request was sent in part"));
        }
        let mut datagram = vec![0u8; DATAGRAM_LIMIT];
        for _ in 0..RECEIVES_LIMIT {
            let (len, from) = match socket::recvfrom::<NetlinkAddr>(fd.as_raw_fd(), &mut datagram) {
                Ok(received) => received,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Err(PeerError::Timeout(ANSWER_WITHIN)),
                Err(e) => return Err(netlink("receive the answer")(e)),
            };
            // Only the kernel (port 0) speaks for a socket; connect() already makes the
            // kernel drop anyone else's datagrams, this says so where the answer is read.
            if from.map(|addr| addr.pid()) != Some(0) {
                continue;
            }
            if let Some(uid) = read_answer(&datagram[..len], client, server)? {
                return Ok(uid);
            }
        }
        Err(PeerError::Malformed("no answer to the request"))
    }

    fn netlink(op: &'static str) -> impl Fn(Errno) -> PeerError {
        move |source| PeerError::Netlink { op, source }
    }

    /// A netlink socket talking only to the kernel, whose receives time out.
    fn open() -> Result<OwnedFd, PeerError> {
        let fd = socket::socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkSockDiag,
        )
        .map_err(netlink("open a NETLINK_SOCK_DIAG socket"))?;
        let timeout = TimeVal::new(
            ANSWER_WITHIN.as_secs().try_into().unwrap_or(1),
            ANSWER_WITHIN.subsec_micros().into(),
        );
        socket::setsockopt(&fd, sockopt::ReceiveTimeout, &timeout)
            .map_err(netlink("set a receive timeout"))?;
        // A connected netlink socket accepts datagrams only from the port it is connected
        // to: another local process cannot slip in an answer naming a uid of its choice.
        socket::connect(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))
            .map_err(netlink("connect to the kernel"))?;
        Ok(fd)
    }

    /// SOCK_DIAG_BY_FAMILY without NLM_F_DUMP: the kernel looks up the one socket with this
    /// 4-tuple (`inet_diag_find_one_icsk`) rather than dumping every socket on the host.
    /// The tuple is seen from the client's side: its source is our peer.
    fn request(client: SocketAddr, server: SocketAddr) -> [u8; NLMSG_HDRLEN + REQ_LEN] {
        let mut bytes = [0u8; NLMSG_HDRLEN + REQ_LEN];
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        bytes[0..4].copy_from_slice(&len.to_ne_bytes());
        bytes[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        bytes[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
        bytes[8..12].copy_from_slice(&SEQ.to_ne_bytes());
        // nlmsg_pid 0: the kernel fills in our port.
        let req = &mut bytes[NLMSG_HDRLEN..];
        req[0] = if client.is_ipv4() { AF_INET } else { AF_INET6 };
        req[1] = IPPROTO_TCP;
        // idiag_ext 0 (no extra attributes), pad 0; every state, the client's may be any.
        req[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
        let id = &mut req[8..];
        id[0..2].copy_from_slice(&client.port().to_be_bytes());
        id[2..4].copy_from_slice(&server.port().to_be_bytes());
        id[4..20].copy_from_slice(&address_bytes(client.ip()));
        id[20..36].copy_from_slice(&address_bytes(server.ip()));
        // idiag_if 0: any interface.
        id[40..44].copy_from_slice(&INET_DIAG_NOCOOKIE.to_ne_bytes());
        id[44..48].copy_from_slice(&INET_DIAG_NOCOOKIE.to_ne_bytes());
        bytes
    }

    /// An IPv4 address goes in the first four bytes of the field.
    fn address_bytes(ip: IpAddr) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        match ip {
            IpAddr::V4(v4) => bytes[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => bytes = v6.octets(),
        }
        bytes
    }

    /// The owner's uid if this datagram answers the request; None if it holds nothing for
    /// us (read on).
    fn read_answer(
        mut datagram: &[u8],
        client: SocketAddr,
        server: SocketAddr,
    ) -> Result<Option<u32>, PeerError> {
        while datagram.len() >= NLMSG_HDRLEN {
            let len = usize::try_from(ne_u32(datagram, 0)).unwrap_or(usize::MAX);
            if len < NLMSG_HDRLEN || len > datagram.len() {
                return Err(PeerError::Malformed(
                    "a message's length runs past the datagram",
                ));
            }
            let kind = u16::from_ne_bytes([datagram[4], datagram[5]]);
            let seq = ne_u32(datagram, 8);
            let payload = &datagram[NLMSG_HDRLEN..len];
            if seq == SEQ {
                match kind {
                    NLMSG_ERROR => error(payload, client, server)?,
                    NLMSG_DONE => return Err(PeerError::NoSuchSocket { client, server }),
                    SOCK_DIAG_BY_FAMILY => return diag_msg(payload, client, server).map(Some),
                    _ => {}
                }
            }
            datagram = datagram.get(len.next_multiple_of(4)..).unwrap_or_default();
        }
        Ok(None)
    }

    /// `struct nlmsgerr`: a negative errno, or 0 for an acknowledgement.
    fn error(payload: &[u8], client: SocketAddr, server: SocketAddr) -> Result<(), PeerError> {
        if payload.len() < 4 {
            return Err(PeerError::Malformed("an error message without its errno"));
        }
        match -i32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]) {
            0 => Ok(()),
            enoent if enoent == Errno::ENOENT as i32 => {
                Err(PeerError::NoSuchSocket { client, server })
            }
            errno => Err(PeerError::Refused(Errno::from_raw(errno))),
        }
    }

    fn diag_msg(payload: &[u8], client: SocketAddr, server: SocketAddr) -> Result<u32, PeerError> {
        if payload.len() < MSG_LEN {
            return Err(PeerError::Malformed(
                "a socket message shorter than inet_diag_msg",
            ));
        }
        let (family, state) = (payload[0], payload[1]);
        // With no established socket on the tuple the kernel's lookup falls back to a
        // listener on the client's address, whose owner is not the client's: only the very
        // socket we asked about answers.
        if endpoints(family, &payload[4..4 + SOCKID_LEN]) != Some((client, server)) {
            return Err(PeerError::NoSuchSocket { client, server });
        }
        let uid = ne_u32(payload, 4 + SOCKID_LEN + 12);
        let inode = ne_u32(payload, 4 + SOCKID_LEN + 16);
        // A socket no process holds open any more (closed, or a TIME_WAIT mini-socket that
        // reports uid 0, which would read as root) has no owner to name.
        if inode == 0 || state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV {
            return Err(PeerError::ClientGone {
                client,
                state: state_name(state),
            });
        }
        Ok(uid)
    }

    /// The socket's own and remote address, canonical as in the request.
    fn endpoints(family: u8, id: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
        let address = |field: &[u8]| -> Option<IpAddr> {
            match family {
                AF_INET => Some(Ipv4Addr::from(<[u8; 4]>::try_from(&field[..4]).ok()?).into()),
                AF_INET6 => Some(Ipv6Addr::from(<[u8; 16]>::try_from(field).ok()?).to_canonical()),
                _ => None,
            }
        };
        let sport = u16::from_be_bytes([id[0], id[1]]);
        let dport = u16::from_be_bytes([id[2], id[3]]);
        Some((
            SocketAddr::new(address(&id[4..20])?, sport),
            SocketAddr::new(address(&id[20..36])?, dport),
        ))
    }

    fn ne_u32(bytes: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
    }

    const TCP_TIME_WAIT: u8 = 6;
    const TCP_NEW_SYN_RECV: u8 = 12;

    /// `include/net/tcp_states.h`, for the operator reading the error.
    fn state_name(state: u8) -> &'static str {
        match state {
            1 => "ESTABLISHED",
            2 => "SYN_SENT",
            3 => "SYN_RECV",
            4 => "FIN_WAIT1",
            5 => "FIN_WAIT2",
            TCP_TIME_WAIT => "TIME_WAIT",
            7 => "CLOSE",
            8 => "CLOSE_WAIT",
            9 => "LAST_ACK",
            10 => "LISTEN",
            11 => "CLOSING",
            TCP_NEW_SYN_RECV => "NEW_SYN_RECV",
            _ => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::UnixStream;

    use super::*;

    fn own_uid() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    #[tokio::test]
    async fn a_unix_peer_is_our_uid_and_pid() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let pid = i32::try_from(std::process::id()).unwrap();
        assert_eq!(
            of_unix(&ours).unwrap(),
            Peer {
                uid: own_uid(),
                pid: Some(pid)
            }
        );
    }

    #[test]
    fn a_connection_that_is_not_loopback_is_refused() {
        for (local, peer) in [
            ("192.0.2.1:443", "127.0.0.1:50000"),
            ("127.0.0.1:443", "10.0.0.7:50000"),
            ("[2001:db8::1]:443", "[::1]:50000"),
            ("[::1]:443", "[::ffff:10.0.0.7]:50000"),
            ("0.0.0.0:443", "127.0.0.1:50000"),
            // Both loopback, but no connection joins two families.
            ("127.0.0.1:443", "[::1]:50000"),
        ] {
            let err = of_tcp(local.parse().unwrap(), peer.parse().unwrap()).unwrap_err();
            assert!(
                matches!(err, PeerError::NotLoopback { .. }),
                "{local} ← {peer}: {err}"
            );
        }
        let mapped = loopback_pair(
            "[::ffff:127.0.0.1]:443".parse().unwrap(),
            "[::ffff:127.3.2.1]:50000".parse().unwrap(),
        );
        assert_eq!(
            mapped.unwrap(),
            (
                "127.0.0.1:443".parse().unwrap(),
                "127.3.2.1:50000".parse().unwrap()
            )
        );
    }

    /// Real connections over loopback, looked up through the kernel.
    #[cfg(target_os = "linux")]
    mod tcp {
        use std::time::Duration;

        use tokio::net::{TcpListener, TcpStream};

        use super::*;

        /// The unprivileged user a client runs as in the root test.
        const NOBODY: u32 = 65534;

        /// The client end and our accepted end of a connection to a listener on `bind`,
        /// reaching it at `connect_ip` (the listener's own address when None).
        async fn connection(
            bind: &str,
            connect_ip: Option<IpAddr>,
        ) -> std::io::Result<(TcpStream, TcpStream)> {
            let listener = TcpListener::bind(bind).await?;
            let mut to = listener.local_addr()?;
            if let Some(ip) = connect_ip {
                to.set_ip(ip);
            }
            let (client, accepted) = tokio::join!(TcpStream::connect(to), listener.accept());
            Ok((client?, accepted?.0))
        }

        fn owner(accepted: &TcpStream) -> Result<Peer, PeerError> {
            of_tcp(
                accepted.local_addr().unwrap(),
                accepted.peer_addr().unwrap(),
            )
        }

        #[tokio::test]
        async fn a_loopback_client_of_ours_is_owned_by_our_uid() {
            let ours = Peer {
                uid: own_uid(),
                pid: None,
            };
            let (_client, accepted) = connection("127.0.0.1:0", None).await.unwrap();
            assert_eq!(owner(&accepted).unwrap(), ours);
            match connection("[::1]:0", None).await {
                Ok((_client, accepted)) => assert_eq!(owner(&accepted).unwrap(), ours),
                Err(e) => eprintln!("IPv6 half skipped: cannot listen and connect on [::1]: {e}"),
            }
        }

        /// A dual-stack listener sees an IPv4 client as ::ffff:127.0.0.1, whether the client's
        /// socket is IPv4 or IPv6 connecting to the mapped address.
        #[tokio::test]
        async fn a_client_seen_through_a_v4_mapped_address_is_found() {
            let ours = Peer {
                uid: own_uid(),
                pid: None,
            };
            for connect_ip in ["127.0.0.1", "::ffff:127.0.0.1"] {
                match connection("[::]:0", Some(connect_ip.parse().unwrap())).await {
                    Ok((_client, accepted)) => {
                        assert!(accepted.local_addr().unwrap().is_ipv6());
                        assert_eq!(owner(&accepted).unwrap(), ours, "client to {connect_ip}");
                    }
                    Err(e) => {
                        eprintln!(
                            "skipped: no dual-stack [::] listener reachable at {connect_ip}: {e}"
                        )
                    }
                }
            }
        }

        #[tokio::test]
        async fn a_client_run_as_another_user_is_owned_by_that_user() {
            assert!(
                nix::unistd::geteuid().is_root(),
                "this test needs root: it runs a client as nobody (run it as root, as CI does)"
            );
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port().to_string();
            // bash's /dev/tcp: a client with no interpreter to find on a PATH nobody can read.
            let mut client = tokio::process::Command::new("setpriv")
                .args([
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    "bash",
                    "-c",
                ])
                .arg("exec 3<>/dev/tcp/127.0.0.1/\"$1\" && exec sleep 30")
                .args(["client", &port])
                .kill_on_drop(true)
                .spawn()
                .expect("setpriv (util-linux) runs the client as nobody");
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted.unwrap().0,
                status = client.wait() => panic!("the client as nobody exited before connecting: {status:?}"),
                () = tokio::time::sleep(Duration::from_secs(10)) => panic!("the client as nobody did not connect within 10s"),
            };
            assert_eq!(
                owner(&accepted).unwrap(),
                Peer {
                    uid: NOBODY,
                    pid: None
                }
            );
            client.kill().await.unwrap();
            // Its socket outlives it as a FIN_WAIT2 mini-socket that reports uid 0: not root.
            let err = owner(&accepted).unwrap_err();
            assert!(matches!(err, PeerError::ClientGone { .. }), "{err}");
        }

        #[tokio::test]
        async fn a_tuple_with_no_client_socket_names_no_one() {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let listening = listener.local_addr().unwrap();
            let unused = {
                let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                probe.local_addr().unwrap()
            };
            // No socket at all on `unused`.
            let err = of_tcp(listening, unused).unwrap_err();
            assert!(matches!(err, PeerError::NoSuchSocket { .. }), "{err}");
            // A "client" whose address is our listener's: the kernel's lookup answers with the
            // listener (owned by us), which is not the socket asked about.
            let err = of_tcp(unused, listening).unwrap_err();
            assert!(matches!(err, PeerError::NoSuchSocket { .. }), "{err}");
        }

        /// A closed client's socket lingers (FIN_WAIT, then a TIME_WAIT mini-socket reporting
        /// uid 0): it must not be taken for a root client.
        #[tokio::test]
        async fn a_client_that_closed_its_socket_names_no_one() {
            use tokio::io::AsyncReadExt;
            let (client, mut accepted) = connection("127.0.0.1:0", None).await.unwrap();
            let (local, peer) = (
                accepted.local_addr().unwrap(),
                accepted.peer_addr().unwrap(),
            );
            drop(client);
            let err = of_tcp(local, peer).unwrap_err();
            assert!(matches!(err, PeerError::ClientGone { .. }), "{err}");
            assert_eq!(accepted.read(&mut [0u8; 1]).await.unwrap(), 0);
            drop(accepted);
            // Our FIN reaches the client over loopback at once; give it a moment regardless.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let err = of_tcp(local, peer).unwrap_err();
            assert!(
                matches!(
                    err,
                    PeerError::ClientGone {
                        state: "TIME_WAIT",
                        ..
                    }
                ),
                "{err}"
            );
        }
    }
}
