//! Deterministic seed mail for tests and demos (std only).
//!
//! This file owns the test mail corpus: [`realistic`] (30 hand-crafted
//! messages covering MIME structures, header encodings and flags that real
//! mailboxes contain), [`bulk`] (any number of varied filler messages) and
//! [`with_attachment`] (one message with an attachment of an exact size).
//! Every message is RFC 5322 with CRLF line endings and 7-bit headers.
//!
//! # The realistic corpus
//!
//! Message `N` has `Message-ID: <seed-N@example.test>`. The mailbox owner is
//! [`OWNER`]. "Unread" means no `S` flag; `T` is Maildir's \Deleted.
//!
//! | N | mailbox | flags | subject (decoded) | what it exercises |
//! | --- | --- | --- | --- | --- |
//! | 1 | INBOX | S | Welcome to imap-bridge | plain text, us-ascii |
//! | 2 | INBOX | | Quarterly report Q1 | multipart/alternative text+html, many To/Cc |
//! | 3 | INBOX | FS | Invoice 2024-001 | multipart/mixed: PDF (base64) + `notes.txt` (quoted-printable) |
//! | 4 | INBOX | S | Newsletter: spring edition | multipart/related html + inline PNG `cid:`[`INLINE_IMAGE_CID`] |
//! | 5 | INBOX | S | Fwd: Office move announcement | attached message/rfc822 |
//! | 6 | INBOX | | [`SUBJECT_JAPANESE`] | ISO-2022-JP B-encoded subject and name, ISO-2022-JP body |
//! | 7 | INBOX | S | [`SUBJECT_GREEK`] | ISO-8859-7 Q-encoded, quoted-printable body |
//! | 8 | INBOX | | [`SUBJECT_RUSSIAN`] | KOI8-R B-encoded, 8bit KOI8-R body |
//! | 9 | INBOX | S | [`SUBJECT_CHINESE`] | UTF-8 B-encoded, base64 UTF-8 body |
//! | 10 | INBOX | RS | [`SUBJECT_GERMAN`] | ISO-8859-1 Q-encoded, quoted-printable body |
//! | 11 | INBOX | F | [`SUBJECT_EMOJI`] | UTF-8 B-encoded emoji, 8bit UTF-8 body |
//! | 12 | INBOX | S | Slides for Friday | RFC 2231 filename [`RFC2231_FILENAME`] |
//! | 13 | INBOX | RS | [`THREAD_SUBJECT`] | thread root |
//! | 14 | INBOX | S | Re: [`THREAD_SUBJECT`] | reply to 13 |
//! | 15 | INBOX | S | Re: [`THREAD_SUBJECT`] | reply to 14 |
//! | 16 | INBOX | | Re: [`THREAD_SUBJECT`] | reply to 15 |
//! | 17 | INBOX | F | Urgent: server maintenance tonight | `Importance: high` |
//! | 18 | INBOX | S | Your weekly digest | text/html only, quoted-printable |
//! | 19 | INBOX | S | *(no Subject header)* | missing subject |
//! | 20 | INBOX | ST | Cancelled: team lunch | \Deleted, not yet expunged |
//! | 21 | Archive/2024 | S | Tax documents 2024 | plain text |
//! | 22 | Archive/2024 | S | Holiday photos | image/jpeg attachment |
//! | 23 | Archive/2024 | FS | Flight booking confirmation | multipart/alternative |
//! | 24 | Entwürfe | DS | Entwurf: Angebot für Kunde | draft, UTF-8 Q-encoded subject |
//! | 25 | Entwürfe | D | Notizen für das Meeting | unread draft |
//! | 26 | Sent | S | Re: Quarterly report Q1 | reply to 2 |
//! | 27 | Sent | S | Lunch on Thursday? | plain text |
//! | 28 | Sent | S | Agenda for Monday | text attachment `agenda.txt` |
//! | 29 | Trash | S | Limited offer just for you | html-only spam |
//! | 30 | Trash | S | Old newsletter | plain text |
//!
//! Totals: INBOX 20 (unread 2, 6, 8, 11, 16, 17; flagged 3, 11, 17), Archive/2024 3,
//! Entwürfe 2, Sent 3, Trash 2. Internal dates ([`SeedMessage::days_ago`])
//! grow with N, so arrival order within a mailbox is N order.
#![allow(dead_code)] // each includer uses a subset

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

/// Address of the mailbox owner the corpus is written for.
pub const OWNER: &str = "robin@example.test";
/// Name of the archive mailbox the corpus uses (child of the special-use
/// `Archive`).
pub const MAILBOX_ARCHIVE: &str = "Archive/2024";
/// Name of the non-ASCII mailbox the corpus uses.
pub const MAILBOX_ENTWUERFE: &str = "Entwürfe";
/// [`MAILBOX_ENTWUERFE`] in modified UTF-7, as IMAP LIST returns it.
pub const MAILBOX_ENTWUERFE_MUTF7: &str = "Entw&APw-rfe";
/// Subject of the four-message thread (13–16; replies carry `Re: `).
pub const THREAD_SUBJECT: &str = "Project kickoff";
/// Decoded subject of message 6 (ISO-2022-JP).
pub const SUBJECT_JAPANESE: &str = "会議の議事録";
/// Decoded sender name of message 6.
pub const NAME_JAPANESE: &str = "山田太郎";
/// A phrase of message 6's decoded body.
pub const BODY_JAPANESE: &str = "明日の会議の議事録を添付なしでお送りします。";
/// Decoded subject of message 7 (ISO-8859-7).
pub const SUBJECT_GREEK: &str = "Καλημέρα κόσμε";
/// Decoded sender name of message 7.
pub const NAME_GREEK: &str = "Γιώργος Παπαδόπουλος";
/// A phrase of message 7's decoded body.
pub const BODY_GREEK: &str = "Τα λέμε αύριο στην Αθήνα.";
/// Decoded subject of message 8 (KOI8-R).
pub const SUBJECT_RUSSIAN: &str = "Привет из Москвы";
/// Decoded sender name of message 8.
pub const NAME_RUSSIAN: &str = "Иван Петров";
/// A phrase of message 8's decoded body.
pub const BODY_RUSSIAN: &str = "Как дела в Москве?";
/// Decoded subject of message 9 (UTF-8).
pub const SUBJECT_CHINESE: &str = "你好，世界";
/// Decoded sender name of message 9.
pub const NAME_CHINESE: &str = "李小龙";
/// A phrase of message 9's decoded body.
pub const BODY_CHINESE: &str = "这是一封测试邮件";
/// Decoded subject of message 10 (ISO-8859-1).
pub const SUBJECT_GERMAN: &str = "Grüße aus München";
/// Decoded sender name of message 10.
pub const NAME_GERMAN: &str = "Jürgen Müller";
/// A phrase of message 10's decoded body.
pub const BODY_GERMAN: &str = "Das Oktoberfest war großartig";
/// Decoded subject of message 11 (UTF-8 with emoji).
pub const SUBJECT_EMOJI: &str = "🎉 Party time 🎂";
/// Decoded sender name of message 11.
pub const NAME_EMOJI: &str = "Emoji Fan 😀";
/// Decoded RFC 2231 filename of message 12's attachment.
pub const RFC2231_FILENAME: &str = "Präsentation Übersicht.pdf";
/// Content-ID (without angle brackets) of message 4's inline image.
pub const INLINE_IMAGE_CID: &str = "logo@example.test";

/// One message of the [`realistic`] corpus and where it belongs.
#[derive(Debug, Clone)]
pub struct SeedMessage {
    /// UTF-8 mailbox name (hierarchy separator `/`), e.g. `"Archive/2024"`.
    pub mailbox: &'static str,
    /// The complete message, CRLF line endings.
    pub raw: Vec<u8>,
    /// Maildir flags: `S` seen, `F` flagged, `R` answered, `D` draft,
    /// `T` deleted (empty: unread).
    pub flags: &'static str,
    /// Age of the message's internal date (arrival time) in days.
    pub days_ago: u32,
}

impl SeedMessage {
    /// The internal date to deliver with: `days_ago` days before now.
    pub fn internal_date(&self) -> SystemTime {
        SystemTime::now() - Duration::from_secs(u64::from(self.days_ago) * 86_400)
    }
}

/// The 30 hand-crafted messages described in the module documentation, in
/// order 1..=30.
pub fn realistic() -> Vec<SeedMessage> {
    let pdf = base64_lines(&fake_pdf());
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
    let jpeg = base64_lines(&fake_jpeg());
    let agenda =
        base64_lines(b"Agenda for Monday\r\n1. Status\r\n2. Budget\r\n3. Any other business\r\n");
    vec![
        seed(1, "INBOX", "S", 116, r#"Date: Fri, 12 Jan 2024 08:53:00 +0100
From: Alice Anders <alice@example.test>
To: Robin Example <robin@example.test>
Subject: Welcome to imap-bridge
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii
Content-Transfer-Encoding: 7bit

Hi Robin,

welcome aboard! This is a plain text message with a few lines.

Cheers,
Alice
"#),
        seed(2, "INBOX", "", 112, r#"Date: Tue, 16 Jan 2024 09:46:00 +0200
From: Bob Brown <bob@example.test>
To: Robin Example <robin@example.test>, Alice Anders <alice@example.test>,
 Carol Chen <carol@example.test>, Dave Dunn <dave@example.test>
Cc: Finance Team <finance@example.test>, "Eve Evans, CFO" <eve@example.test>
Reply-To: Bob Brown <bob.brown@example.test>
Subject: Quarterly report Q1
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="alt-2"

This is a multi-part message in MIME format.

--alt-2
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 7bit

Hello everyone,

revenue grew by 12% in Q1. Details are in the HTML version.

Bob

--alt-2
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: 7bit

<!DOCTYPE html>
<html><body>
<p>Hello everyone,</p>
<p>revenue grew by <b>12%</b> in Q1.</p>
<table><tr><th>Month</th><th>Revenue</th></tr>
<tr><td>January</td><td>1.2M</td></tr>
<tr><td>February</td><td>1.3M</td></tr>
<tr><td>March</td><td>1.5M</td></tr></table>
<p>Bob</p>
</body></html>

--alt-2--
"#),
        seed(3, "INBOX", "FS", 108, &format!(r#"Date: Sat, 20 Jan 2024 10:39:00 -0500
From: Billing <billing@shop.example.test>
To: robin@example.test
Subject: Invoice 2024-001
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mixed-3"

--mixed-3
Content-Type: text/plain; charset=us-ascii

Please find invoice 2024-001 and our notes attached.

--mixed-3
Content-Type: application/pdf; name="invoice-2024-001.pdf"
Content-Disposition: attachment; filename="invoice-2024-001.pdf"
Content-Transfer-Encoding: base64

{pdf}
--mixed-3
Content-Type: text/plain; charset=utf-8; name="notes.txt"
Content-Disposition: attachment; filename="notes.txt"
Content-Transfer-Encoding: quoted-printable

Notizen zur Besprechung:
- Budget f=C3=BCr Q2 pr=C3=BCfen
- =C3=9Cbergabe an das Team =E2=80=94 n=C3=A4chste Woche

--mixed-3--
"#)),
        seed(4, "INBOX", "S", 104, &format!(r#"Date: Wed, 24 Jan 2024 11:32:00 +0900
From: "Example Newsletter" <news@example.test>
To: robin@example.test
Subject: Newsletter: spring edition
MIME-Version: 1.0
Content-Type: multipart/related; boundary="rel-4"; type="text/html"

--rel-4
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: 7bit

<html><body>
<img src="cid:{INLINE_IMAGE_CID}" alt="Logo">
<h1>Spring edition</h1>
<p>Flowers, sunshine and new features.</p>
</body></html>

--rel-4
Content-Type: image/png; name="logo.png"
Content-Disposition: inline; filename="logo.png"
Content-ID: <{INLINE_IMAGE_CID}>
Content-Transfer-Encoding: base64

{png}

--rel-4--
"#)),
        seed(5, "INBOX", "S", 100, r#"Date: Sun, 28 Jan 2024 12:25:00 +0530
From: Carol Chen <carol@example.test>
To: Robin Example <robin@example.test>
Subject: Fwd: Office move announcement
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="fwd-5"

--fwd-5
Content-Type: text/plain; charset=us-ascii

FYI, see the forwarded announcement below.

--fwd-5
Content-Type: message/rfc822
Content-Disposition: inline

Message-ID: <announcement-1@corp.example.test>
Date: Mon, 08 Jan 2024 10:00:00 +0100
From: Facilities <facilities@corp.example.test>
To: All Staff <staff@corp.example.test>
Subject: Office move announcement
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

We are moving to the new building on 1 March.
Please pack your desks by 28 February.

--fwd-5--
"#),
        seed_bytes(6, "INBOX", "", 96, r#"Date: Thu, 01 Feb 2024 13:18:00 -0800
From: =?ISO-2022-JP?B?GyRCOzNFREJATzobKEI=?= <yamada@example.jp>
To: robin@example.test
Subject: =?ISO-2022-JP?B?GyRCMnE1RCRONUQ7dk8/GyhC?=
MIME-Version: 1.0
Content-Type: text/plain; charset=ISO-2022-JP
Content-Transfer-Encoding: 7bit

"#, b"\x1b$B;3ED$G$9!#\x1b(B\n\x1b$BL@F|$N2q5D$N5D;vO?$rE:IU$J$7$G$*Aw$j$7$^$9!#\x1b(B\n\x1b$B$h$m$7$/$*4j$$$7$^$9!#\x1b(B\n"),
        seed(7, "INBOX", "S", 92, r#"Date: Mon, 05 Feb 2024 14:11:00 +0300
From: =?ISO-8859-7?Q?=C3=E9=FE=F1=E3=EF=F2_=D0=E1=F0=E1=E4=FC=F0=EF=F5=EB=EF=F2?= <giorgos@example.gr>
To: robin@example.test
Subject: =?ISO-8859-7?Q?=CA=E1=EB=E7=EC=DD=F1=E1_=EA=FC=F3=EC=E5?=
MIME-Version: 1.0
Content-Type: text/plain; charset=ISO-8859-7
Content-Transfer-Encoding: quoted-printable

=CA=E1=EB=E7=EC=DD=F1=E1 =F3=E5 =FC=EB=EF=F5=F2!
=D4=E1 =EB=DD=EC=E5 =E1=FD=F1=E9=EF =F3=F4=E7=ED =C1=E8=DE=ED=E1.
"#),
        seed_bytes(8, "INBOX", "", 88, r#"Date: Fri, 09 Feb 2024 15:04:00 +0000
From: =?KOI8-R?B?6dfBziDwxdTSz9c=?= <ivan@example.ru>
To: robin@example.test
Subject: =?KOI8-R?B?8NLJ18XUIMnaIO3P08vX2Q==?=
MIME-Version: 1.0
Content-Type: text/plain; charset=KOI8-R
Content-Transfer-Encoding: 8bit

"#, b"\xf0\xd2\xc9\xd7\xc5\xd4!\n\xeb\xc1\xcb \xc4\xc5\xcc\xc1 \xd7 \xed\xcf\xd3\xcb\xd7\xc5? \xf0\xcf\xc7\xcf\xc4\xc1 \xcf\xd4\xcc\xc9\xde\xce\xc1\xd1.\n"),
        seed(9, "INBOX", "S", 84, r#"Date: Tue, 13 Feb 2024 15:57:00 +0100
From: =?UTF-8?B?5p2O5bCP6b6Z?= <li@example.cn>
To: robin@example.test
Subject: =?UTF-8?B?5L2g5aW977yM5LiW55WM?=
MIME-Version: 1.0
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: base64

5L2g5aW977yBDQrov5nmmK/kuIDlsIHmtYvor5Xpgq7ku7bvvIznpZ3kvaDkuIDliIfpobrliKnj
gIINCg==
"#),
        seed(10, "INBOX", "RS", 80, r#"Date: Sat, 17 Feb 2024 16:50:00 +0200
From: =?ISO-8859-1?Q?J=FCrgen_M=FCller?= <juergen@example.de>
To: Robin Example <robin@example.test>
Subject: =?ISO-8859-1?Q?Gr=FC=DFe_aus_M=FCnchen?=
MIME-Version: 1.0
Content-Type: text/plain; charset=ISO-8859-1
Content-Transfer-Encoding: quoted-printable

Liebe Gr=FC=DFe aus M=FCnchen!
Das Oktoberfest war gro=DFartig, =E4u=DFerst sch=F6n.
"#),
        seed(11, "INBOX", "F", 76, r#"Date: Wed, 21 Feb 2024 17:43:00 -0500
From: =?UTF-8?B?RW1vamkgRmFuIPCfmIA=?= <emoji@example.test>
To: robin@example.test
Subject: =?UTF-8?B?8J+OiSBQYXJ0eSB0aW1lIPCfjoI=?=
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Party on Saturday 🎉 Bring cake 🎂 and good mood 😀!
"#),
        seed(12, "INBOX", "S", 72, &format!(r#"Date: Sun, 25 Feb 2024 18:36:00 +0900
From: Dave Dunn <dave@example.test>
To: Robin Example <robin@example.test>
Subject: Slides for Friday
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mixed-12"

--mixed-12
Content-Type: text/plain; charset=us-ascii

The slides are attached.

--mixed-12
Content-Type: application/pdf; name*=UTF-8''Pr%C3%A4sentation%20%C3%9Cbersicht.pdf
Content-Disposition: attachment;
 filename*=UTF-8''Pr%C3%A4sentation%20%C3%9Cbersicht.pdf
Content-Transfer-Encoding: base64

{pdf}
--mixed-12--
"#)),
        seed(13, "INBOX", "RS", 68, r#"Date: Thu, 29 Feb 2024 19:29:00 +0530
From: Alice Anders <alice@example.test>
To: Project Team <team@example.test>
Cc: Robin Example <robin@example.test>
Subject: Project kickoff
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Hi all, let's kick off the project on Monday at 10:00.
"#),
        seed(14, "INBOX", "S", 64, r#"Date: Mon, 04 Mar 2024 20:22:00 -0800
From: Bob Brown <bob@example.test>
To: Project Team <team@example.test>
Subject: Re: Project kickoff
In-Reply-To: <seed-13@example.test>
References: <seed-13@example.test>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Monday works for me.

> Hi all, let's kick off the project on Monday at 10:00.
"#),
        seed(15, "INBOX", "S", 60, r#"Date: Fri, 08 Mar 2024 21:15:00 +0300
From: Carol Chen <carol@example.test>
To: Project Team <team@example.test>
Subject: Re: Project kickoff
In-Reply-To: <seed-14@example.test>
References: <seed-13@example.test> <seed-14@example.test>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Can we make it 11:00?

> Monday works for me.
"#),
        seed(16, "INBOX", "", 56, r#"Date: Tue, 12 Mar 2024 22:08:00 +0000
From: Alice Anders <alice@example.test>
To: Project Team <team@example.test>
Subject: Re: Project kickoff
In-Reply-To: <seed-15@example.test>
References: <seed-13@example.test> <seed-14@example.test>
 <seed-15@example.test>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

11:00 it is. See you there.

> Can we make it 11:00?
"#),
        seed(17, "INBOX", "F", 52, r#"Date: Sat, 16 Mar 2024 23:01:00 +0100
From: Operations <ops@example.test>
To: robin@example.test
Subject: Urgent: server maintenance tonight
Importance: high
X-Priority: 1
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

The mail servers will be down from 22:00 to 23:00 UTC tonight.
"#),
        seed(18, "INBOX", "S", 48, r#"Date: Wed, 20 Mar 2024 23:54:00 +0200
From: Digest <digest@example.test>
To: robin@example.test
Subject: Your weekly digest
List-Unsubscribe: <mailto:unsubscribe@example.test>
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: quoted-printable

<html><body><h2>This week</h2><p>Five stories you should not miss, s=
elected just for you.</p><p style=3D"color:#555">Unsubscribe any time.</p=
></body></html>
"#),
        seed(19, "INBOX", "S", 44, r#"Date: Mon, 25 Mar 2024 00:47:00 -0500
From: Frank Fischer <frank@example.test>
To: robin@example.test
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

This message has no subject line.
"#),
        seed(20, "INBOX", "ST", 40, r#"Date: Fri, 29 Mar 2024 01:40:00 +0900
From: Alice Anders <alice@example.test>
To: Project Team <team@example.test>
Subject: Cancelled: team lunch
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

The team lunch is cancelled.
"#),
        seed(21, MAILBOX_ARCHIVE, "S", 36, r#"Date: Tue, 02 Apr 2024 02:33:00 +0530
From: Tax Office <tax@example.test>
To: robin@example.test
Subject: Tax documents 2024
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Your tax documents for 2024 are ready for download.
"#),
        seed(22, MAILBOX_ARCHIVE, "S", 32, &format!(r#"Date: Sat, 06 Apr 2024 03:26:00 -0800
From: Grace Green <grace@example.test>
To: Robin Example <robin@example.test>
Subject: Holiday photos
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mixed-22"

--mixed-22
Content-Type: text/plain; charset=us-ascii

Here is a photo from the beach.

--mixed-22
Content-Type: image/jpeg; name="beach.jpg"
Content-Disposition: attachment; filename="beach.jpg"
Content-Transfer-Encoding: base64

{jpeg}
--mixed-22--
"#)),
        seed(23, MAILBOX_ARCHIVE, "FS", 28, r#"Date: Wed, 10 Apr 2024 04:19:00 +0300
From: Airline <booking@airline.example.test>
To: robin@example.test
Subject: Flight booking confirmation
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="alt-23"

--alt-23
Content-Type: text/plain; charset=us-ascii

Booking ABC123: Berlin -> Lisbon, 12 May 2024, seat 14C.

--alt-23
Content-Type: text/html; charset=us-ascii

<p>Booking <b>ABC123</b>: Berlin &rarr; Lisbon, 12 May 2024, seat 14C.</p>

--alt-23--
"#),
        seed(24, MAILBOX_ENTWUERFE, "DS", 24, r#"Date: Sun, 14 Apr 2024 05:12:00 +0000
From: Robin Example <robin@example.test>
To: Frau Schmidt <schmidt@kunde.example.test>
Subject: =?UTF-8?Q?Entwurf=3A_Angebot_f=C3=BCr_Kunde?=
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Sehr geehrte Frau Schmidt,

anbei unser Angebot f=C3=BCr die Erweiterung Ihres B=C3=BCros.
Die Preise verstehen sich zzgl. MwSt.

Mit freundlichen Gr=C3=BC=C3=9Fen
Robin
"#),
        seed(25, MAILBOX_ENTWUERFE, "D", 20, r#"Date: Thu, 18 Apr 2024 06:05:00 +0100
From: Robin Example <robin@example.test>
Subject: =?UTF-8?Q?Notizen_f=C3=BCr_das_Meeting?=
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Notizen f=C3=BCr das Meeting am Freitag:
- Zeitplan pr=C3=BCfen
- R=C3=A4ume buchen
"#),
        seed(26, "Sent", "S", 16, r#"Date: Mon, 22 Apr 2024 06:58:00 +0200
From: Robin Example <robin@example.test>
To: Bob Brown <bob.brown@example.test>
Subject: Re: Quarterly report Q1
In-Reply-To: <seed-2@example.test>
References: <seed-2@example.test>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Great numbers, thanks Bob!
"#),
        seed(27, "Sent", "S", 12, r#"Date: Fri, 26 Apr 2024 07:51:00 -0500
From: Robin Example <robin@example.test>
To: Alice Anders <alice@example.test>
Subject: Lunch on Thursday?
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Shall we have lunch on Thursday?
"#),
        seed(28, "Sent", "S", 8, &format!(r#"Date: Tue, 30 Apr 2024 08:44:00 +0900
From: Robin Example <robin@example.test>
To: Project Team <team@example.test>
Subject: Agenda for Monday
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mixed-28"

--mixed-28
Content-Type: text/plain; charset=us-ascii

Agenda attached.

--mixed-28
Content-Type: text/plain; charset=us-ascii; name="agenda.txt"
Content-Disposition: attachment; filename="agenda.txt"
Content-Transfer-Encoding: base64

{agenda}
--mixed-28--
"#)),
        seed(29, "Trash", "S", 4, r#"Date: Sat, 04 May 2024 09:37:00 +0530
From: "Best Deals" <deals@spam.example.test>
To: robin@example.test
Subject: Limited offer just for you
MIME-Version: 1.0
Content-Type: text/html; charset=us-ascii

<html><body><p>Buy now and save <b>90%</b>!</p></body></html>
"#),
        seed(30, "Trash", "S", 0, r#"Date: Wed, 08 May 2024 10:30:00 -0800
From: "Example Newsletter" <news@example.test>
To: robin@example.test
Subject: Old newsletter
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Last year's news, kept only until the trash is emptied.
"#),
    ]
}

/// `n` varied messages for bulk seeding, deterministic for a given `seed`.
///
/// Message `i` (0-based) has `Subject: Bulk message {i}`, `Message-ID:
/// <bulk-{seed}-{i}@example.test>`, a sender from a pool of eight names and a
/// `Date` that increases with `i` (from 1 Jan 2024, about ten minutes apart).
/// Sizes are about 2–6 KB; roughly 30 % are multipart/alternative and 10 %
/// multipart/mixed with a small attachment, the rest plain text.
pub fn bulk(n: usize, seed: u64) -> impl Iterator<Item = Vec<u8>> {
    (0..n).map(move |i| bulk_message(i, seed))
}

/// A message with one `application/octet-stream` attachment named
/// `payload-{size}.bin` whose decoded content is exactly
/// [`attachment_bytes`]`(size)` (base64, 76-character lines).
pub fn with_attachment(size: usize) -> Vec<u8> {
    let data = attachment_bytes(size);
    let mut out = to_crlf(
        format!(
            "Message-ID: <attachment-{size}@example.test>\n\
             Date: Mon, 06 May 2024 12:00:00 +0000\n\
             From: Alice Anders <alice@example.test>\n\
             To: Robin Example <robin@example.test>\n\
             Subject: Attachment of {size} bytes\n\
             MIME-Version: 1.0\n\
             Content-Type: multipart/mixed; boundary=\"payload-boundary\"\n\
             \n\
             --payload-boundary\n\
             Content-Type: text/plain; charset=us-ascii\n\
             \n\
             The attachment holds {size} bytes of pseudo-random data.\n\
             \n\
             --payload-boundary\n\
             Content-Type: application/octet-stream; name=\"payload-{size}.bin\"\n\
             Content-Disposition: attachment; filename=\"payload-{size}.bin\"; size={size}\n\
             Content-Transfer-Encoding: base64\n\
             \n"
        )
        .as_bytes(),
    );
    push_base64(&mut out, &data);
    out.extend_from_slice(b"--payload-boundary--\r\n");
    out
}

/// The deterministic pseudo-random content of [`with_attachment`]`(size)`'s
/// attachment: the first `size` bytes of one fixed stream, so a shorter
/// payload is a prefix of a longer one.
pub fn attachment_bytes(size: usize) -> Vec<u8> {
    let mut rng = Rng(0x5EED_A77A_C4ED_0001);
    let mut out = vec![0; size];
    for chunk in out.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next().to_le_bytes()[..chunk.len()]);
    }
    out
}

const BULK_SENDERS: [(&str, &str); 8] = [
    ("Alice Anders", "alice@example.test"),
    ("Bob Brown", "bob@example.test"),
    ("Carol Chen", "carol@example.test"),
    ("Dave Dunn", "dave@example.test"),
    ("Eve Evans", "eve@example.test"),
    ("Frank Fischer", "frank@example.test"),
    ("Grace Green", "grace@example.test"),
    ("Heidi Hansen", "heidi@example.test"),
];

#[rustfmt::skip]
const WORDS: [&str; 32] = [
    "account", "budget", "meeting", "project", "review", "schedule", "report", "update",
    "customer", "release", "server", "deadline", "draft", "summary", "invoice", "team",
    "quarter", "plan", "feedback", "proposal", "contract", "design", "issue", "status",
    "migration", "backup", "mailbox", "calendar", "travel", "office", "support", "training",
];

/// 2024-01-01T00:00:00Z; bulk message `i` is dated `i` × 10 minutes later,
/// plus up to 5 minutes of jitter.
const BULK_EPOCH: u64 = 1_704_067_200;

fn bulk_message(i: usize, seed: u64) -> Vec<u8> {
    let index = u64::try_from(i).expect("message index fits in u64");
    let mut rng = Rng(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let (name, address) = BULK_SENDERS[rng.below(BULK_SENDERS.len())];
    let date = rfc5322_date(BULK_EPOCH + index * 600 + rng.next() % 300);
    let kind = rng.below(10);
    // Keep every kind at about 2-6 KB: an attachment takes up to 1.6 KB and
    // multipart/alternative carries the text twice.
    let body_len = match kind {
        0 => 1100 + rng.below(2800),
        1..=3 => 900 + rng.below(1800),
        _ => 1700 + rng.below(3700),
    };
    let body = filler_text(&mut rng, body_len);
    let mut head = format!(
        "Message-ID: <bulk-{seed}-{i}@example.test>\n\
         Date: {date}\n\
         From: {name} <{address}>\n\
         To: Robin Example <robin@example.test>\n\
         Subject: Bulk message {i}\n\
         MIME-Version: 1.0\n"
    );
    let mut out;
    match kind {
        0 => {
            let attachment: Vec<u8> = (0..300 + rng.below(900))
                .map(|_| (rng.next() & 0xff) as u8)
                .collect();
            write!(
                head,
                "Content-Type: multipart/mixed; boundary=\"bulk-{i}\"\n\n\
                 --bulk-{i}\nContent-Type: text/plain; charset=us-ascii\n\n{body}\n\
                 --bulk-{i}\nContent-Type: application/octet-stream; name=\"data-{i}.bin\"\n\
                 Content-Disposition: attachment; filename=\"data-{i}.bin\"\n\
                 Content-Transfer-Encoding: base64\n\n"
            )
            .expect("write to String");
            out = to_crlf(head.as_bytes());
            push_base64(&mut out, &attachment);
            out.extend_from_slice(format!("--bulk-{i}--\r\n").as_bytes());
        }
        1..=3 => {
            let paragraphs: String = body
                .split("\n\n")
                .map(|p| format!("<p>{p}</p>\n"))
                .collect();
            write!(
                head,
                "Content-Type: multipart/alternative; boundary=\"bulk-{i}\"\n\n\
                 --bulk-{i}\nContent-Type: text/plain; charset=us-ascii\n\n{body}\n\
                 --bulk-{i}\nContent-Type: text/html; charset=us-ascii\n\n\
                 <html><body>\n{paragraphs}</body></html>\n\
                 --bulk-{i}--\n"
            )
            .expect("write to String");
            out = to_crlf(head.as_bytes());
        }
        _ => {
            write!(head, "Content-Type: text/plain; charset=us-ascii\n\n{body}")
                .expect("write to String");
            out = to_crlf(head.as_bytes());
        }
    }
    out
}

/// About `len` bytes of sentences in 72-column lines, blank-line paragraphs.
fn filler_text(rng: &mut Rng, len: usize) -> String {
    let mut text = String::with_capacity(len + 80);
    let mut line_len = 0;
    while text.len() < len {
        let sentence_words = 6 + rng.below(10);
        for w in 0..sentence_words {
            let word = WORDS[rng.below(WORDS.len())];
            let piece = if w == 0 {
                let mut chars = word.chars();
                let first = chars
                    .next()
                    .expect("words are not empty")
                    .to_ascii_uppercase();
                format!("{first}{}", chars.as_str())
            } else {
                word.to_owned()
            };
            let piece = if w + 1 == sentence_words {
                format!("{piece}.")
            } else {
                piece
            };
            if line_len > 0 && line_len + 1 + piece.len() > 72 {
                text.push('\n');
                line_len = 0;
            } else if line_len > 0 {
                text.push(' ');
                line_len += 1;
            }
            text.push_str(&piece);
            line_len += piece.len();
        }
        if rng.below(4) == 0 {
            text.push_str("\n\n");
            line_len = 0;
        }
    }
    text.push('\n');
    text
}

/// Builds a [`SeedMessage`]: prepends the Message-ID and converts `text`'s
/// line endings to CRLF.
fn seed(
    n: u32,
    mailbox: &'static str,
    flags: &'static str,
    days_ago: u32,
    text: &str,
) -> SeedMessage {
    seed_bytes(n, mailbox, flags, days_ago, text, b"")
}

/// Like [`seed`], with a body in a non-UTF-8 charset appended after `head`.
fn seed_bytes(
    n: u32,
    mailbox: &'static str,
    flags: &'static str,
    days_ago: u32,
    head: &str,
    body: &[u8],
) -> SeedMessage {
    let mut raw = format!("Message-ID: <seed-{n}@example.test>\r\n").into_bytes();
    raw.extend(to_crlf(head.as_bytes()));
    raw.extend(to_crlf(body));
    SeedMessage {
        mailbox,
        raw,
        flags,
        days_ago,
    }
}

/// Converts bare LF line endings to CRLF (existing CRLFs are kept).
fn to_crlf(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 32);
    let mut previous = 0u8;
    for &byte in text {
        if byte == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(byte);
        previous = byte;
    }
    out
}

/// Standard base64 of `data` in 76-character CRLF-terminated lines.
fn base64_lines(data: &[u8]) -> String {
    let mut out = Vec::new();
    push_base64(&mut out, data);
    String::from_utf8(out).expect("base64 is ASCII")
}

/// Appends standard base64 of `data` in 76-character CRLF-terminated lines.
fn push_base64(out: &mut Vec<u8>, data: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let start = out.len();
    out.resize(
        start + data.len().div_ceil(57) * 2 + data.len().div_ceil(3) * 4,
        0,
    );
    let buf = &mut out[start..];
    let mut at = 0;
    for line in data.chunks(57) {
        for group in line.chunks(3) {
            let n = u32::from(group[0]) << 16
                | u32::from(*group.get(1).unwrap_or(&0)) << 8
                | u32::from(*group.get(2).unwrap_or(&0));
            buf[at] = ALPHABET[(n >> 18) as usize];
            buf[at + 1] = ALPHABET[(n >> 12 & 0x3f) as usize];
            buf[at + 2] = if group.len() > 1 {
                ALPHABET[(n >> 6 & 0x3f) as usize]
            } else {
                b'='
            };
            buf[at + 3] = if group.len() > 2 {
                ALPHABET[(n & 0x3f) as usize]
            } else {
                b'='
            };
            at += 4;
        }
        buf[at] = b'\r';
        buf[at + 1] = b'\n';
        at += 2;
    }
}

/// About 1.5 KB that looks like a small PDF document: the invoice's (message 3's) attachment.
pub fn fake_pdf() -> Vec<u8> {
    let mut pdf = String::from("%PDF-1.4\n%\u{e2}\u{e3}\u{cf}\u{d3}\n");
    pdf.push_str("1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n");
    pdf.push_str("2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n");
    pdf.push_str(
        "3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >> endobj\n",
    );
    pdf.push_str(
        "4 0 obj << /Length 1200 >> stream\nBT /F1 12 Tf 72 770 Td (Invoice 2024-001) Tj ET\n",
    );
    for line in 0..24 {
        writeln!(
            pdf,
            "BT /F1 10 Tf 72 {} Td (Item {line}: 1 x service, 100.00 EUR) Tj ET",
            740 - line * 20
        )
        .expect("write to String");
    }
    pdf.push_str("endstream endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n");
    pdf.into_bytes()
}

/// About 2 KB starting with a JPEG/JFIF header, deterministic noise after it.
fn fake_jpeg() -> Vec<u8> {
    let mut jpeg = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00,
    ];
    let mut rng = Rng(22);
    jpeg.extend((0..2048).map(|_| (rng.next() >> 24) as u8));
    jpeg.extend_from_slice(&[0xFF, 0xD9]);
    jpeg
}

/// `Day, DD Mon YYYY HH:MM:SS +0000` for a Unix timestamp.
fn rfc5322_date(unix_secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    // Civil-from-days (Howard Hinnant), valid for dates after 1970.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// SplitMix64: tiny, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-enough value in `0..bound`.
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}
