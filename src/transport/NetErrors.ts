/**
 * Turns `@effect/platform`'s open and listen failures into `ConnectFailed` and `ListenFailed`:
 * the platform errors say only "An error occurred during Open" and "Open", and keep the host, port
 * and system error code in their `cause`, where a user reading a log line does not see them.
 */
import * as Socket from "@effect/platform/Socket"
import type * as SocketServer from "@effect/platform/SocketServer"
import { Predicate } from "effect"
import { ConnectFailed, ListenFailed } from "../errors.js"

/** `ECONNREFUSED` and friends from a Node.js system error; `fallback` when there is none. */
const systemCode = (cause: unknown, fallback: string): string =>
  Predicate.hasProperty(cause, "code") && typeof cause.code === "string" ? cause.code : fallback

/**
 * A net socket's `Open` failure is its connect failing: refused, unreachable, unresolved, or the
 * open timeout, whose cause carries no code (hence `ETIMEDOUT`). Every other error passes as it is.
 */
export const connectFailed = (host: string, port: number) => <E>(error: E): E | ConnectFailed =>
  Socket.isSocketError(error) && error.reason === "Open"
    ? new ConnectFailed({ host, port, code: systemCode(error.cause, "ETIMEDOUT"), cause: error.cause })
    : error

/** A listener that cannot bind: the cause is Node.js's `listen` error. */
export const listenFailed = (host: string, port: number) => (error: SocketServer.SocketServerError): ListenFailed =>
  new ListenFailed({ host, port, code: systemCode(error.cause, "UNKNOWN"), cause: error.cause })
