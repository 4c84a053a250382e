/**
 * A typed client for imap-bridge, built on openapi-fetch and the types that openapi-typescript
 * generates from `openapi/openapi.json` (`npm run generate` writes `src/schema.d.ts`).
 *
 * Every path, parameter and field below is checked against that document: when the API changes
 * incompatibly, `npm run check` fails here instead of a front end failing at run time.
 */

import createClient, { createQuerySerializer, type Client } from "openapi-fetch";

import type { components, paths } from "./schema.js";

type Schemas = components["schemas"];

export type LoginResponse = Schemas["LoginResponse"];
export type Mailbox = Schemas["Mailbox"];
export type MessageList = Schemas["MessageList"];
export type Summary = Schemas["Summary"];
export type MessageView = Schemas["MessageView"];
export type FlagsPatch = Schemas["FlagsPatch"];
export type MessageFlags = Schemas["MessageFlags"];
export type TransferResult = Schemas["TransferResult"];
export type ChangeSet = Schemas["ChangeSet"];
export type ThreadList = Schemas["ThreadList"];
export type ThreadItem = Schemas["ThreadItem"];
export type ThreadView = Schemas["ThreadView"];
export type Problem = Schemas["Problem"];

/** Filters and order of a header list: every query parameter except the cursor. */
export type MessageQuery = Omit<
  NonNullable<paths["/v1/mailboxes/{mailbox}/messages"]["get"]["parameters"]["query"]>,
  "cursor"
>;

/** Filters of a thread list and `include_sent`: every query parameter except the cursor. */
export type ThreadQuery = Omit<
  NonNullable<paths["/v1/mailboxes/{mailbox}/threads"]["get"]["parameters"]["query"]>,
  "cursor"
>;

/** Which threads a thread id is looked up among: the filters and `include_sent` of its list. */
export type ThreadLookup = NonNullable<
  paths["/v1/mailboxes/{mailbox}/threads/{thread_id}"]["get"]["parameters"]["query"]
>;

/**
 * The `data:` of each event of `GET /v1/events`, by `event:` name. The document describes the
 * payloads as schemas but names the events only in prose and titles, which generated types do
 * not carry, so the names are listed here.
 */
export interface StreamEvents {
  "message.new": Schemas["MessageNewEvent"];
  "message.flags": Schemas["MessageFlagsEvent"];
  "message.expunged": Schemas["MessageExpungedEvent"];
  "mailbox.reset": Schemas["MailboxResetEvent"];
  "auth.expired": Schemas["AuthExpiredEvent"];
  "stream.end": Schemas["StreamEndEvent"];
}

/** Where the bridge is, and optionally a `fetch` to reach it with (tests, proxies, Node). */
export interface BridgeOptions {
  /** The bridge's URL, e.g. `https://mail-api.example.com`; a path prefix is kept. */
  baseUrl: string;
  fetch?: (input: Request) => Promise<Response>;
}

/** A failed call: the HTTP status and, when the bridge sent one, its problem report. */
export class BridgeError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Problem | undefined,
  ) {
    super(problem ? `${status} ${problem.code}: ${problem.detail}` : `HTTP ${status}`);
    this.name = "BridgeError";
  }
}

/**
 * The data of a successful call, or a `BridgeError`. Success without a body (204) gives
 * `undefined`.
 */
function unwrap<T>(
  result: { data: T; error?: never; response: Response } | { data?: never; error: unknown; response: Response },
): T {
  if (result.error === undefined && result.response.ok) {
    return result.data as T;
  }
  return raise(result.response, result.error);
}

function raise(response: Response, error: unknown): never {
  const problem = isProblem(error) ? error : undefined;
  throw new BridgeError(response.status, problem);
}

function isProblem(value: unknown): value is Problem {
  return typeof value === "object" && value !== null && "code" in value && "status" in value;
}

function trimSlash(url: string): string {
  return url.endsWith("/") ? url.slice(0, -1) : url;
}

/** Logs in with IMAP credentials and returns a session holding the access token. */
export async function login(options: BridgeOptions, username: string, password: string): Promise<Session> {
  const anonymous = createClient<paths>(clientOptions(options));
  const token = unwrap(
    await anonymous.POST("/v1/auth/login", {
      body: { username, password },
    }),
  );
  return new Session(options, token);
}

/**
 * Logs in with an OAuth 2.0 access token the front end obtained from the provider (Gmail,
 * Microsoft 365). When the IMAP server later refuses it (401 `upstream_token_expired`, or the
 * `auth.expired` event), get a new one and call `Session.refresh`.
 */
export async function loginWithAccessToken(
  options: BridgeOptions,
  username: string,
  accessToken: string,
  mechanism?: "oauthbearer" | "xoauth2",
): Promise<Session> {
  const anonymous = createClient<paths>(clientOptions(options));
  const token = unwrap(
    await anonymous.POST("/v1/auth/login", {
      body: { username, access_token: accessToken, ...(mechanism ? { mechanism } : {}) },
    }),
  );
  return new Session(options, token);
}

function clientOptions(options: BridgeOptions, token?: string) {
  return {
    baseUrl: trimSlash(options.baseUrl),
    ...(options.fetch ? { fetch: options.fetch } : {}),
    ...(token ? { headers: { Authorization: `Bearer ${token}` } } : {}),
  };
}

/** A logged-in user's calls. */
export class Session {
  /** The raw typed client, for calls this class does not wrap. */
  readonly api: Client<paths>;
  /** The login answer: token, lifetime and the IMAP user name. */
  readonly login: LoginResponse;
  readonly #options: BridgeOptions;

  constructor(options: BridgeOptions, login: LoginResponse) {
    this.#options = options;
    this.login = login;
    this.api = createClient<paths>(clientOptions(options, login.access_token));
  }

  /**
   * A new session for a new OAuth 2.0 access token: the bridge checks it and returns a new
   * bridge token for the same user and server. Resume event streams with their last event id.
   */
  async refresh(accessToken: string): Promise<Session> {
    const token = unwrap(await this.api.POST("/v1/auth/refresh", { body: { access_token: accessToken } }));
    return new Session(this.#options, token);
  }

  /** Revokes the token and ends the user's IMAP sessions. */
  async logout(): Promise<void> {
    unwrap(await this.api.POST("/v1/auth/logout"));
  }

  /** Every mailbox, INBOX first. */
  async mailboxes(): Promise<Mailbox[]> {
    return unwrap(await this.api.GET("/v1/mailboxes")).mailboxes;
  }

  /**
   * The header list of `mailbox` page by page, following `next_cursor` until the last page.
   * Each page carries `uid_validity` and the `state` to pass to `changes` later.
   */
  async *pages(mailbox: string, query: MessageQuery = {}): AsyncGenerator<MessageList, void, undefined> {
    let cursor: string | undefined;
    do {
      const page = unwrap(
        await this.api.GET("/v1/mailboxes/{mailbox}/messages", {
          params: {
            path: { mailbox },
            query: cursor === undefined ? query : { ...query, cursor },
          },
        }),
      );
      yield page;
      cursor = page.next_cursor ?? undefined;
    } while (cursor !== undefined);
  }

  /** Every summary that `query` selects, and the state of the first page for `changes`. */
  async allMessages(
    mailbox: string,
    query: MessageQuery = {},
  ): Promise<{ messages: Summary[]; state: string; uidValidity: number }> {
    const messages: Summary[] = [];
    let first: MessageList | undefined;
    for await (const page of this.pages(mailbox, query)) {
      first ??= page;
      if (page.uid_validity !== first.uid_validity) {
        throw new Error(`UIDVALIDITY of ${mailbox} changed while listing it; list it again`);
      }
      messages.push(...page.messages);
    }
    if (first === undefined) {
      throw new Error("the header list returned no page");
    }
    return { messages, state: first.state, uidValidity: first.uid_validity };
  }

  /**
   * A page of `mailbox`'s conversations, newest first by their latest message; pass the page's
   * `next_cursor` as `cursor`, with the same `query`, for the next one. After `k` new messages
   * (events or `changes`), the first `k` threads are every thread they went to.
   */
  async threads(mailbox: string, query: ThreadQuery = {}, cursor?: string): Promise<ThreadList> {
    return unwrap(
      await this.api.GET("/v1/mailboxes/{mailbox}/threads", {
        params: {
          path: { mailbox },
          query: cursor === undefined ? query : { ...query, cursor },
        },
      }),
    );
  }

  /**
   * One conversation: its messages' summaries in reading order, each with its depth and mailbox.
   * Pass the filters and `include_sent` of the list `threadId` came from to get the thread as
   * that list showed it.
   */
  async thread(mailbox: string, threadId: string, query: ThreadLookup = {}): Promise<ThreadView> {
    return unwrap(
      await this.api.GET("/v1/mailboxes/{mailbox}/threads/{thread_id}", {
        params: { path: { mailbox, thread_id: threadId }, query },
      }),
    );
  }

  /** One message, parsed; `markSeen` also sets `\Seen`. */
  async message(mailbox: string, uid: number, markSeen = false): Promise<MessageView> {
    return unwrap(
      await this.api.GET("/v1/mailboxes/{mailbox}/messages/{uid}", {
        params: { path: { mailbox, uid }, query: { mark_seen: markSeen } },
      }),
    );
  }

  /** Changes one message's flags and returns them as the server now holds them. */
  async patchFlags(mailbox: string, uid: number, patch: FlagsPatch): Promise<MessageFlags> {
    return unwrap(
      await this.api.PATCH("/v1/mailboxes/{mailbox}/messages/{uid}/flags", {
        params: { path: { mailbox, uid } },
        body: patch,
      }),
    );
  }

  /** Moves messages to mailbox `to`; one result per UID with its new UID when known. */
  async move(mailbox: string, uids: number[], to: string): Promise<TransferResult[]> {
    return unwrap(
      await this.api.POST("/v1/mailboxes/{mailbox}/move", {
        params: { path: { mailbox } },
        body: { uids, to },
      }),
    ).results;
  }

  /** What changed in `mailbox` since `state` (from a header list or an earlier change set). */
  async changes(mailbox: string, since: string): Promise<ChangeSet> {
    return unwrap(
      await this.api.GET("/v1/mailboxes/{mailbox}/changes", {
        params: { path: { mailbox }, query: { since } },
      }),
    );
  }

  /**
   * A URL for one `EventSource` connection watching `mailboxes` (INBOX when empty). A browser's
   * EventSource cannot send `Authorization`, so the URL carries a ticket instead. The ticket opens
   * one stream; the EventSource's own reconnections (which send `Last-Event-ID`) may reuse it
   * while the token lives. Ask for a new URL for every new EventSource.
   */
  async eventStreamUrl(mailboxes: string[] = []): Promise<string> {
    const { ticket } = unwrap(await this.api.POST("/v1/events/ticket"));
    const path = "/v1/events" satisfies keyof paths;
    const query: NonNullable<paths[typeof path]["get"]["parameters"]["query"]> = {
      ticket,
      ...(mailboxes.length > 0 ? { mailbox: mailboxes } : {}),
    };
    const search = createQuerySerializer({ array: { style: "form", explode: true } })(query);
    return `${trimSlash(this.#options.baseUrl)}${path}?${search}`;
  }
}

/**
 * Calls `handler` with the parsed `data` and the `id` of every event named `name` on `source`.
 * Returns a function that removes the listener.
 */
export function onStreamEvent<N extends keyof StreamEvents>(
  source: EventSource,
  name: N,
  handler: (data: StreamEvents[N], id: string) => void,
): () => void {
  const listener = (event: MessageEvent<string>) => {
    handler(JSON.parse(event.data) as StreamEvents[N], event.lastEventId);
  };
  source.addEventListener(name, listener);
  return () => source.removeEventListener(name, listener);
}
