/**
 * Compile-time proof that the generated types are strict. Nothing here runs: `npm run check`
 * type-checks it. Each `@ts-expect-error` marks a call the API does not accept; if the document
 * ever generated loose types (`any`, index signatures, optional path parameters), the expected
 * error would disappear and tsc would fail with "Unused '@ts-expect-error' directive".
 */

import createClient from "openapi-fetch";

import type { FlagsPatch, Mailbox, MessageView, StreamEvents, Summary, ThreadItem } from "./client.js";
import type { paths } from "./schema.js";

type IsAny<T> = 0 extends 1 & T ? true : false;
type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function assertType<T extends true>(): T | undefined {
  return undefined;
}

// The shapes are real types, not `any`, and carry the spec's field types.
assertType<Equals<IsAny<Mailbox>, false>>();
assertType<Equals<IsAny<MessageView>, false>>();
assertType<Equals<Summary["uid"], number>>();
assertType<Equals<Summary["preview"], string | undefined>>();
assertType<Equals<ThreadItem["latest"], Summary>>();
assertType<Equals<ThreadItem["uids"], number[]>>();
assertType<Equals<Mailbox["special_use"], "inbox" | "sent" | "drafts" | "trash" | "junk" | "archive" | "all" | "flagged" | null | undefined>>();
assertType<Equals<StreamEvents["message.expunged"], { mailbox: string; uid: number }>>();
assertType<Equals<StreamEvents["message.new"]["subject"], string | null | undefined>>();

// openapi-fetch does not reject unknown fields in a request body (openapi-ts/openapi-typescript
// issue 2329), so the client's methods take the schema types themselves, which do.
// @ts-expect-error a flag patch has add, remove or set, nothing else
export const unknownFlagField: FlagsPatch = { toggle: ["\\Seen"] };

export async function rejectedCalls(): Promise<void> {
  const api = createClient<paths>({ baseUrl: "http://bridge.invalid" });

  // @ts-expect-error the login body names the field `username`, not `user`
  await api.POST("/v1/auth/login", { body: { user: "alice", password: "secret" } });

  // @ts-expect-error the login body requires a password or an access token
  await api.POST("/v1/auth/login", { body: { username: "alice" } });

  // @ts-expect-error a mechanism is oauthbearer or xoauth2
  await api.POST("/v1/auth/login", { body: { username: "alice", access_token: "t", mechanism: "plain" } });

  // @ts-expect-error a refresh needs the new access token
  await api.POST("/v1/auth/refresh", { body: {} });

  // @ts-expect-error a message needs its `uid` path parameter
  await api.GET("/v1/mailboxes/{mailbox}/messages/{uid}", { params: { path: { mailbox: "INBOX" } } });

  // @ts-expect-error a UID is a number, not a string
  await api.GET("/v1/mailboxes/{mailbox}/messages/{uid}", { params: { path: { mailbox: "INBOX", uid: "7" } } });

  // @ts-expect-error a header list needs its mailbox
  await api.GET("/v1/mailboxes/{mailbox}/messages");

  // @ts-expect-error `sort` is one of the listed keys
  await api.GET("/v1/mailboxes/{mailbox}/messages", { params: { path: { mailbox: "INBOX" }, query: { sort: "newest" } } });

  // @ts-expect-error `preview` is a boolean
  await api.GET("/v1/mailboxes/{mailbox}/messages", { params: { path: { mailbox: "INBOX" }, query: { preview: "no" } } });

  // @ts-expect-error `include_sent` is a boolean
  await api.GET("/v1/mailboxes/{mailbox}/threads", { params: { path: { mailbox: "INBOX" }, query: { include_sent: "yes" } } });

  // @ts-expect-error a thread needs its `thread_id`
  await api.GET("/v1/mailboxes/{mailbox}/threads/{thread_id}", { params: { path: { mailbox: "INBOX" } } });

  // @ts-expect-error a thread list takes no `sort`
  await api.GET("/v1/mailboxes/{mailbox}/threads", { params: { path: { mailbox: "INBOX" }, query: { sort: "date" } } });

  // @ts-expect-error `changes` requires `since`
  await api.GET("/v1/mailboxes/{mailbox}/changes", { params: { path: { mailbox: "INBOX" }, query: {} } });

  // @ts-expect-error a move names its destination `to` (and `to` is required)
  await api.POST("/v1/mailboxes/{mailbox}/move", { params: { path: { mailbox: "INBOX" } }, body: { uids: [7], destination: "Archive" } });

  // @ts-expect-error there is no such path
  await api.GET("/v1/folders");

  // @ts-expect-error mailboxes are listed with GET, not PUT
  await api.PUT("/v1/mailboxes");

  const { data } = await api.GET("/v1/mailboxes");
  if (data) {
    // @ts-expect-error the list is `mailboxes`, not `items`
    void data.items;
    // @ts-expect-error with noUncheckedIndexedAccess an element may be missing
    void data.mailboxes[0].name;
  }
}
