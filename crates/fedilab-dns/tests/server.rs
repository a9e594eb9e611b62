//! The server in-process on 127.0.0.1:0, queried over UDP and TCP with
//! hickory-net's client and with `dig` (Debian dnsutils).
//!
//! No sleeps: every await is in a timeout, and the server is stopped with
//! its shutdown token.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use fedilab_dns::{ServeError, Server, ServerOptions, SharedZone, Stats, Zone, zone};
use fedilab_profile::{DEFAULT_PROFILE_YAML, InstanceCounts, LabSpec, Overrides};
use hickory_net::client::{Client, ClientHandle};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_proto::op::DnsResponse;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Every await in these tests finishes within this or fails.
const LIMIT: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} took more than {LIMIT:?}"))
}

fn lab(instances: usize) -> LabSpec {
    let overrides = Overrides {
        instances: Some(InstanceCounts::Total(instances)),
        ..Overrides::default()
    };
    LabSpec::from_yaml(DEFAULT_PROFILE_YAML, "default", &overrides).expect("valid spec")
}

fn lab_zone(instances: usize, answer: &[&str]) -> Zone {
    let answer: Vec<IpAddr> = answer.iter().map(|a| a.parse().expect("ip")).collect();
    zone(&lab(instances), &answer).expect("zone")
}

/// A server on 127.0.0.1, UDP and TCP on the same port.
struct Running {
    addr: SocketAddr,
    zone: SharedZone,
    stop: CancellationToken,
    task: JoinHandle<Result<Stats, ServeError>>,
}

impl Running {
    async fn start(zone: Zone) -> Self {
        // The UDP port the kernel picks may be taken for TCP: try another.
        let mut bound = None;
        for _ in 0..20 {
            let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
            let addr = udp.local_addr().expect("UDP address");
            if let Ok(tcp) = TcpListener::bind(addr).await {
                bound = Some((udp, tcp, addr));
                break;
            }
        }
        let (udp, tcp, addr) = bound.expect("a port free for both UDP and TCP");
        let zone = SharedZone::new(zone);
        let server = Server::new(zone.clone()).with_options(ServerOptions {
            udp_workers: 2,
            ..ServerOptions::default()
        });
        let stop = server.shutdown_token();
        let task = tokio::spawn(server.serve(vec![udp], vec![tcp]));
        Self {
            addr,
            zone,
            stop,
            task,
        }
    }

    async fn stop(self) -> Stats {
        self.stop.cancel();
        within("shutdown", self.task)
            .await
            .expect("server task")
            .expect("server result")
    }

    async fn udp_client(&self, edns: bool) -> Client<TokioRuntimeProvider> {
        let stream = UdpClientStream::builder(self.addr, TokioRuntimeProvider::default())
            .with_timeout(Some(LIMIT))
            .build();
        let (mut client, background) = Client::<TokioRuntimeProvider>::from_sender(stream);
        tokio::spawn(background);
        if !edns {
            client.disable_edns();
        }
        client
    }

    async fn tcp_client(&self) -> Client<TokioRuntimeProvider> {
        let (connect, sender) = TcpClientStream::new(
            self.addr,
            None,
            Some(LIMIT),
            TokioRuntimeProvider::default(),
        );
        let stream = within("TCP connect", connect).await.expect("TCP connect");
        let (client, background) =
            Client::<TokioRuntimeProvider>::with_timeout(stream, sender, LIMIT);
        tokio::spawn(background);
        client
    }
}

async fn ask(
    client: &mut Client<TokioRuntimeProvider>,
    name: &str,
    rtype: RecordType,
) -> DnsResponse {
    let name = Name::from_str(name).expect("name");
    within("query", client.query(name, DNSClass::IN, rtype))
        .await
        .expect("a response")
}

fn addresses(response: &DnsResponse) -> Vec<IpAddr> {
    response
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_has_its_address_over_udp_and_tcp() {
    let server = Running::start(lab_zone(3, &["10.0.0.1", "fd00::1"])).await;
    let mut udp = server.udp_client(true).await;
    let mut tcp = server.tcp_client().await;
    for client in [&mut udp, &mut tcp] {
        for host in ["mastodon1", "mastodon2", "mastodon3"] {
            let name = format!("{host}.fediverse.local.");
            let r = ask(client, &name, RecordType::A).await;
            assert_eq!(r.response_code, ResponseCode::NoError, "{name}");
            assert!(r.authoritative, "{name} is answered authoritatively");
            assert!(!r.recursion_available, "no recursion offered");
            assert_eq!(addresses(&r), [ip("10.0.0.1")], "{name}");
            assert_eq!(r.answers[0].name.to_string(), name);
            let r = ask(client, &name, RecordType::AAAA).await;
            assert_eq!(addresses(&r), [ip("fd00::1")], "{name}");
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_outside_the_lab_and_zone_transfers_are_refused() {
    let server = Running::start(lab_zone(2, &["10.0.0.1"])).await;
    let mut udp = server.udp_client(true).await;
    for (name, rtype) in [
        ("example.com.", RecordType::A),
        ("com.", RecordType::NS),
        (".", RecordType::SOA),
        ("local.", RecordType::A),
        ("notfediverse.local.", RecordType::A),
    ] {
        let r = ask(&mut udp, name, rtype).await;
        assert_eq!(r.response_code, ResponseCode::Refused, "{name}");
        assert!(!r.authoritative, "{name}");
        assert!(r.answers.is_empty(), "{name}");
    }
    let mut tcp = server.tcp_client().await;
    for rtype in [RecordType::AXFR, RecordType::IXFR] {
        let r = ask(&mut tcp, "fediverse.local.", rtype).await;
        assert_eq!(r.response_code, ResponseCode::Refused, "{rtype}");
        assert!(r.answers.is_empty());
    }
    let stats = server.stop().await;
    assert_eq!(stats.rcode(ResponseCode::Refused), 7, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wildcard_answers_a_and_nodata_never_nxdomain() {
    let server = Running::start(lab_zone(2, &["10.0.0.1"])).await;
    let mut udp = server.udp_client(true).await;

    let r = ask(&mut udp, "anything.fediverse.local.", RecordType::A).await;
    assert_eq!(r.response_code, ResponseCode::NoError);
    assert!(r.authoritative);
    assert_eq!(addresses(&r), [ip("10.0.0.1")]);
    // Synthesised with the query's name as owner (RFC 4592 3.3.1).
    assert_eq!(r.answers[0].name.to_string(), "anything.fediverse.local.");

    // NODATA for a type the wildcard has no data for: NOERROR, no answer,
    // the SOA in authority (RFC 2308 2.2). hickory-dns#2905 says NXDOMAIN.
    let r = ask(&mut udp, "anything.fediverse.local.", RecordType::AAAA).await;
    assert_eq!(r.response_code, ResponseCode::NoError);
    assert!(r.authoritative);
    assert!(r.answers.is_empty());
    assert_eq!(r.authorities.len(), 1);
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(r.authorities[0].name.to_string(), "fediverse.local.");

    for name in [
        "x.fediverse.local.",
        "a.b.c.fediverse.local.",
        "hostmaster.fediverse.local.",
        "*.fediverse.local.",
        "MiXeD.FediVerse.LOCAL.",
    ] {
        for rtype in [
            RecordType::A,
            RecordType::AAAA,
            RecordType::TXT,
            RecordType::MX,
            RecordType::SRV,
            RecordType::CAA,
            RecordType::HTTPS,
        ] {
            let r = ask(&mut udp, name, rtype).await;
            assert_eq!(r.response_code, ResponseCode::NoError, "{name} {rtype}");
            assert!(r.authoritative, "{name} {rtype}");
            if rtype == RecordType::A {
                assert_eq!(addresses(&r), [ip("10.0.0.1")], "{name}");
            } else {
                assert!(r.answers.is_empty(), "{name} {rtype}");
                assert_eq!(r.authorities.len(), 1, "{name} {rtype}: SOA in authority");
            }
        }
    }
    // Existing names answer NODATA too, not NXDOMAIN.
    let r = ask(&mut udp, "mastodon1.fediverse.local.", RecordType::TXT).await;
    assert_eq!(r.response_code, ResponseCode::NoError);
    assert_eq!(r.authorities.len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apex_has_soa_ns_and_addresses() {
    let server = Running::start(lab_zone(2, &["10.0.0.1"])).await;
    let mut udp = server.udp_client(true).await;

    let r = ask(&mut udp, "fediverse.local.", RecordType::SOA).await;
    assert_eq!(r.response_code, ResponseCode::NoError);
    assert!(r.authoritative);
    let [soa] = &r.answers[..] else {
        panic!("one SOA: {:?}", r.answers)
    };
    let RData::SOA(soa) = &soa.data else {
        panic!("an SOA: {soa:?}")
    };
    assert_eq!(soa.mname.to_string(), "ns.fediverse.local.");
    assert_eq!(soa.rname.to_string(), "hostmaster.fediverse.local.");
    assert_eq!(soa.minimum, 60);

    let r = ask(&mut udp, "fediverse.local.", RecordType::NS).await;
    let ns: Vec<String> = r.answers.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(ns, ["ns.fediverse.local."]);
    let r = ask(&mut udp, "ns.fediverse.local.", RecordType::A).await;
    assert_eq!(addresses(&r), [ip("10.0.0.1")]);
    let r = ask(&mut udp, "fediverse.local.", RecordType::A).await;
    assert_eq!(addresses(&r), [ip("10.0.0.1")]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_answer_is_truncated_over_udp_and_complete_over_tcp() {
    let many: Vec<String> = (1..=60).map(|i| format!("10.0.1.{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let server = Running::start(lab_zone(2, &many)).await;

    // 60 A records are about 1 KB: over 512 bytes without EDNS.
    let mut plain = server.udp_client(false).await;
    let r = ask(&mut plain, "mastodon1.fediverse.local.", RecordType::A).await;
    assert!(r.truncation, "TC set over UDP without EDNS");
    assert!(r.answers.is_empty());
    assert!(r.edns.is_none());

    // With EDNS (hickory asks for 1232 bytes) it fits.
    let mut edns = server.udp_client(true).await;
    let r = ask(&mut edns, "mastodon1.fediverse.local.", RecordType::A).await;
    assert!(!r.truncation);
    assert_eq!(r.answers.len(), 60);
    assert!(r.edns.is_some(), "OPT in the response");

    let mut tcp = server.tcp_client().await;
    let r = ask(&mut tcp, "mastodon1.fediverse.local.", RecordType::A).await;
    assert!(!r.truncation);
    assert_eq!(r.answers.len(), 60);
    let stats = server.stop().await;
    assert_eq!(stats.truncated(), 1, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_neither_kill_nor_wedge_the_server() {
    let server = Running::start(lab_zone(2, &["10.0.0.1"])).await;
    let junk = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let valid_header = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    let mut packets: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        valid_header[..11].to_vec(),
        valid_header.to_vec(),
        // A label length past the end.
        [&valid_header[..], b"\x3fshort"].concat(),
        // Extended label type 0x40 and a reserved 0x80.
        [&valid_header[..], b"\x41abc\x00\x00\x01\x00\x01"].concat(),
        [&valid_header[..], b"\x80\x00\x00\x01\x00\x01"].concat(),
        // A pointer to itself.
        [&valid_header[..], b"\xc0\x0c\x00\x01\x00\x01"].concat(),
        // A name longer than 255 bytes.
        [&valid_header[..], &[63u8; 300][..]].concat(),
        // 65535 additional records promised, none given.
        [
            &[0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0xff, 0xff][..],
            b"\x00\x00\x01\x00\x01",
        ]
        .concat(),
        // Two OPT records.
        [
            &[0, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2][..],
            b"\x00\x00\x01\x00\x01",
            b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00",
            b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00",
        ]
        .concat(),
        // Longer than the server's receive buffer.
        [&valid_header[..], b"\x00\x00\x01\x00\x01", &[0u8; 8000][..]].concat(),
        // A response (QR set): dropped, never answered.
        [
            &[0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0][..],
            b"\x00\x00\x01\x00\x01",
        ]
        .concat(),
    ];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..500 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state % 600) as usize;
        packets.push(
            (0..len)
                .map(|i| (state >> (i % 57)) as u8 ^ i as u8)
                .collect(),
        );
    }
    for packet in &packets {
        within("send junk", junk.send_to(packet, server.addr))
            .await
            .expect("send junk");
    }

    // Junk over TCP: a length prefix promising more than is sent, then a
    // close; and a header-less message.
    let mut tcp = within("connect", TcpStream::connect(server.addr))
        .await
        .expect("connect");
    within("write", tcp.write_all(&[0x01, 0x00, 0xde, 0xad]))
        .await
        .expect("write");
    drop(tcp);
    let mut tcp = within("connect", TcpStream::connect(server.addr))
        .await
        .expect("connect");
    within("write", tcp.write_all(&[0x00, 0x03, 1, 2, 3]))
        .await
        .expect("write");
    let mut rest = Vec::new();
    within("close", tcp.read_to_end(&mut rest))
        .await
        .expect("server closes");
    assert!(rest.is_empty(), "no answer to a header-less message");

    // Still answering, over both transports.
    let mut udp = server.udp_client(true).await;
    let r = ask(&mut udp, "mastodon2.fediverse.local.", RecordType::A).await;
    assert_eq!(addresses(&r), [ip("10.0.0.1")]);
    let mut tcp = server.tcp_client().await;
    let r = ask(&mut tcp, "mastodon2.fediverse.local.", RecordType::A).await;
    assert_eq!(addresses(&r), [ip("10.0.0.1")]);

    let stats = server.stop().await;
    assert!(stats.dropped() >= 4, "{stats}");
    assert!(stats.rcode(ResponseCode::FormErr) >= 7, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_zone_is_served_without_a_restart() {
    let server = Running::start(lab_zone(2, &["10.0.0.1"])).await;
    let mut udp = server.udp_client(true).await;
    let r = ask(&mut udp, "mastodon3.fediverse.local.", RecordType::A).await;
    assert_eq!(addresses(&r), [ip("10.0.0.1")], "the wildcard, at first");
    let old_serial = server.zone.current().serial();

    server.zone.replace(lab_zone(3, &["10.0.0.2"]));
    let r = ask(&mut udp, "mastodon3.fediverse.local.", RecordType::A).await;
    assert_eq!(addresses(&r), [ip("10.0.0.2")]);
    let r = ask(&mut udp, "fediverse.local.", RecordType::SOA).await;
    let RData::SOA(soa) = &r.answers[0].data else {
        panic!("SOA")
    };
    assert_ne!(soa.serial, old_serial);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_answers_by_type_and_rcode() {
    let server = Running::start(lab_zone(2, &["10.0.0.1"])).await;
    let mut udp = server.udp_client(true).await;
    ask(&mut udp, "mastodon1.fediverse.local.", RecordType::A).await;
    ask(&mut udp, "mastodon1.fediverse.local.", RecordType::A).await;
    ask(&mut udp, "mastodon1.fediverse.local.", RecordType::AAAA).await;
    ask(&mut udp, "example.org.", RecordType::A).await;
    ask(&mut udp, "a.mastodon1.fediverse.local.", RecordType::A).await;
    let stats = server.stop().await;
    let by_type: Vec<(RecordType, u64)> = stats.by_qtype().collect();
    assert_eq!(by_type, [(RecordType::A, 4), (RecordType::AAAA, 1)]);
    assert_eq!(stats.rcode(ResponseCode::NoError), 3);
    assert_eq!(stats.rcode(ResponseCode::Refused), 1);
    assert_eq!(stats.rcode(ResponseCode::NXDomain), 1);
    assert_eq!(
        stats.to_string(),
        "5 answers (A 4, AAAA 1; NOERROR 3, NXDOMAIN 1, REFUSED 1), \
         0 truncated, 0 dropped, 0 TCP connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_tcp_connections() {
    let server = Running::start(lab_zone(2, &["10.0.0.1"])).await;
    let mut idle = within("connect", TcpStream::connect(server.addr))
        .await
        .expect("connect");
    // One query, so the connection is surely accepted; then silence.
    let query = b"\x00\x2b\xab\xcd\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\
                  \x09mastodon1\x09fediverse\x05local\x00\x00\x01\x00\x01";
    within("write", idle.write_all(query)).await.expect("write");
    let len = within("read", idle.read_u16()).await.expect("length");
    let mut response = vec![0; usize::from(len)];
    within("read", idle.read_exact(&mut response))
        .await
        .expect("response");
    assert_eq!(response[..2], [0xab, 0xcd]);
    assert_eq!(response[3] & 0x0f, 0, "NOERROR");

    let stats = server.stop().await;
    assert_eq!(stats.tcp_connections(), 1);
    let mut rest = Vec::new();
    within("close", idle.read_to_end(&mut rest))
        .await
        .expect("closed");
    assert!(rest.is_empty());
}

// --- dig -------------------------------------------------------------------

/// Runs `dig @127.0.0.1 -p PORT ARGS`, returning its output.
async fn dig(addr: SocketAddr, args: &[&str]) -> String {
    let mut command = tokio::process::Command::new("dig");
    command
        .arg(format!("@{}", addr.ip()))
        .args([
            "-p",
            &addr.port().to_string(),
            "+time=5",
            "+tries=1",
            "+norec",
        ])
        .args(args)
        .kill_on_drop(true);
    let output = match within("dig", command.output()).await {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("dig is not installed: apt-get install dnsutils (scripts/test.sh does)")
        }
        Err(e) => panic!("cannot run dig: {e}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "dig {args:?} failed:\n{stdout}");
    stdout
}

/// The records of one section of dig's output, whitespace-normalised.
fn section(output: &str, name: &str) -> Vec<String> {
    let header = format!(";; {name} SECTION:");
    output
        .lines()
        .skip_while(|l| !l.starts_with(&header))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn status(output: &str) -> &str {
    output
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("(no status)")
}

fn flags(output: &str) -> &str {
    output
        .split(";; flags: ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap_or("(no flags)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_agrees() {
    let server = Running::start(lab_zone(2, &["10.0.0.1"])).await;
    let addr = server.addr;

    let out = dig(addr, &["mastodon2.fediverse.local", "A"]).await;
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert_eq!(flags(&out), "qr aa", "{out}");
    assert_eq!(
        section(&out, "ANSWER"),
        ["mastodon2.fediverse.local. 60 IN A 10.0.0.1"]
    );

    let out = dig(addr, &["+tcp", "mastodon1.fediverse.local", "A"]).await;
    assert_eq!(
        section(&out, "ANSWER"),
        ["mastodon1.fediverse.local. 60 IN A 10.0.0.1"]
    );

    let out = dig(addr, &["example.com", "A"]).await;
    assert_eq!(status(&out), "REFUSED", "{out}");

    let out = dig(addr, &["+rec", "example.com", "A"]).await;
    assert_eq!(status(&out), "REFUSED", "{out}");
    assert_eq!(flags(&out), "qr rd", "RD echoed, RA never: {out}");

    let out = dig(addr, &["whatever.fediverse.local", "A"]).await;
    assert_eq!(
        section(&out, "ANSWER"),
        ["whatever.fediverse.local. 60 IN A 10.0.0.1"]
    );

    let out = dig(addr, &["whatever.fediverse.local", "AAAA"]).await;
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert!(section(&out, "ANSWER").is_empty(), "{out}");
    let authority = section(&out, "AUTHORITY");
    assert_eq!(authority.len(), 1, "{out}");
    assert!(
        authority[0].starts_with(
            "fediverse.local. 60 IN SOA ns.fediverse.local. hostmaster.fediverse.local. "
        ),
        "{out}"
    );

    let out = dig(addr, &["fediverse.local", "NS"]).await;
    assert_eq!(
        section(&out, "ANSWER"),
        ["fediverse.local. 60 IN NS ns.fediverse.local."]
    );

    let out = dig(addr, &["fediverse.local", "AXFR"]).await;
    assert!(out.contains("Transfer failed"), "{out}");

    // dig sends EDNS by default and shows our OPT.
    let out = dig(addr, &["fediverse.local", "SOA"]).await;
    assert!(
        out.contains("; EDNS: version: 0, flags:; udp: 1232"),
        "{out}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_sees_truncation_over_udp_and_the_whole_answer_over_tcp() {
    let many: Vec<String> = (1..=60).map(|i| format!("10.0.1.{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let server = Running::start(lab_zone(2, &many)).await;
    let addr = server.addr;

    // +ignore: show the truncated response instead of retrying over TCP.
    let out = dig(
        addr,
        &["+noedns", "+ignore", "mastodon1.fediverse.local", "A"],
    )
    .await;
    assert_eq!(flags(&out), "qr aa tc", "{out}");
    assert!(section(&out, "ANSWER").is_empty(), "{out}");

    let out = dig(
        addr,
        &["+bufsize=600", "+ignore", "mastodon1.fediverse.local", "A"],
    )
    .await;
    assert_eq!(flags(&out), "qr aa tc", "the EDNS size is honoured: {out}");

    let out = dig(addr, &["+tcp", "mastodon1.fediverse.local", "A"]).await;
    assert_eq!(section(&out, "ANSWER").len(), 60, "{out}");
    // Without +ignore dig retries over TCP by itself.
    let out = dig(addr, &["+noedns", "mastodon1.fediverse.local", "A"]).await;
    assert_eq!(section(&out, "ANSWER").len(), 60, "{out}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_helper_gets_addresses_refusals_and_timeouts() {
    use fedilab_dns::query::{QueryError, query_a};
    let server = Running::start(lab_zone(2, &["10.0.0.1"])).await;
    let got = within(
        "query",
        query_a(server.addr, "mastodon2.fediverse.local.", LIMIT),
    )
    .await
    .expect("answered");
    assert_eq!(got, [ip("10.0.0.1")]);
    let refused = within("query", query_a(server.addr, "example.com.", LIMIT)).await;
    assert!(
        matches!(
            refused,
            Err(QueryError::Rcode {
                code: ResponseCode::Refused,
                ..
            })
        ),
        "{refused:?}"
    );
    server.stop().await;
    // Nobody answers on a bound but silent socket.
    let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = silent.local_addr().expect("addr");
    let short = std::time::Duration::from_millis(200);
    let timed_out = within("query", query_a(addr, "mastodon1.fediverse.local.", short)).await;
    assert!(
        matches!(timed_out, Err(QueryError::Timeout { .. })),
        "{timed_out:?}"
    );
}
