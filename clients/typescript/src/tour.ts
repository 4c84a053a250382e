/**
 * A front end's first minute against a bridge, through the typed client: log in, list the
 * mailboxes, page through INBOX (with previews, and once without), list its conversations and
 * open one, open a message, flag it, see the flag among the changes, file it away, get an
 * event-stream URL, log out. `tests/typescript_client.rs` compiles this and runs
 * it against a real bridge, so the client is proven at run time as well as by tsc.
 */

import { BridgeError, login, type BridgeOptions, type ThreadList } from "./client.js";

/** What the tour saw, for the test to check. */
export interface TourReport {
  user: string;
  mailboxes: string[];
  pageSizes: number[];
  messages: number;
  /** Messages listed with a non-empty preview, and those of a list without previews that had one. */
  previews: { shown: number; withoutPreviews: number };
  threads: { pages: number; listed: number; total: number; opened: number; openedMessages: number };
  opened: { uid: number; subject: string | null; headers: number };
  flagsAfterPatch: string[];
  changedUids: number[];
  movedTo: string;
  newUid: number | null;
  eventStreamPath: string;
  missingMessageCode: string | null;
  statusAfterLogout: number | null;
}

/** Runs the tour with `pageSize` summaries per page; INBOX must hold more than one page. */
export async function tour(
  options: BridgeOptions,
  username: string,
  password: string,
  pageSize = 2,
): Promise<TourReport> {
  const session = await login(options, username, password);
  const listed = await session.mailboxes();
  const mailboxes = listed.map((mailbox) => mailbox.name);

  const pageSizes: number[] = [];
  for await (const page of session.pages("INBOX", { limit: pageSize })) pageSizes.push(page.messages.length);
  const inbox = await session.allMessages("INBOX", { limit: pageSize });
  const plain = await session.allMessages("INBOX", { limit: pageSize, preview: false });
  const threadPages: ThreadList[] = [];
  let cursor: string | undefined;
  do {
    const page = await session.threads("INBOX", { limit: pageSize }, cursor);
    threadPages.push(page);
    cursor = page.next_cursor ?? undefined;
  } while (cursor !== undefined);
  const newest = threadPages[0]?.threads[0];
  if (newest === undefined) throw new Error("INBOX has no threads");
  const conversation = await session.thread("INBOX", newest.thread_id);

  const first = inbox.messages[0];
  if (first === undefined) throw new Error("INBOX is empty");

  const message = await session.message("INBOX", first.uid);
  const flagged = await session.patchFlags("INBOX", first.uid, { add: ["\\Flagged"] });
  const changes = await session.changes("INBOX", inbox.state);

  const archive = listed.find((mailbox) => mailbox.special_use === "archive")?.name;
  if (archive === undefined) throw new Error("no mailbox has the archive role");
  const [moved] = await session.move("INBOX", [first.uid], archive);
  const eventStream = new URL(await session.eventStreamUrl(["INBOX", archive]));

  let missingMessageCode: string | null = null;
  try {
    await session.message("INBOX", first.uid);
  } catch (error) {
    if (!(error instanceof BridgeError)) throw error;
    missingMessageCode = error.problem?.code ?? null;
  }

  await session.logout();
  let statusAfterLogout: number | null = null;
  try {
    await session.mailboxes();
  } catch (error) {
    if (!(error instanceof BridgeError)) throw error;
    statusAfterLogout = error.status;
  }

  return {
    user: session.login.user,
    mailboxes,
    pageSizes,
    messages: inbox.messages.length,
    previews: {
      shown: inbox.messages.filter((summary) => (summary.preview ?? "") !== "").length,
      withoutPreviews: plain.messages.filter((summary) => summary.preview !== undefined).length,
    },
    threads: {
      pages: threadPages.length,
      listed: threadPages.reduce((n, page) => n + page.threads.length, 0),
      total: threadPages[0]?.total ?? 0,
      opened: newest.messages,
      openedMessages: conversation.messages.length,
    },
    opened: { uid: message.uid, subject: message.subject ?? null, headers: message.headers.length },
    flagsAfterPatch: flagged.flags,
    changedUids: changes.updated.map((update) => update.uid),
    movedTo: archive,
    newUid: moved?.new_uid ?? null,
    eventStreamPath: `${eventStream.pathname}${eventStream.search.replace(/ticket=[^&]*/, "ticket=…")}`,
    missingMessageCode,
    statusAfterLogout,
  };
}
