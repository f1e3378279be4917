/**
 * The worker side of `workers.ts`: answers the orchestrator's commands over Node IPC, one reply per
 * request, and never outlives the orchestrator (it shuts down when the IPC channel closes and after
 * a hard lifetime cap, whichever comes first). Shared by `bench/worker.ts` and `stress/worker.ts`.
 */
import { messageOf } from "./systems/types.js"

export interface Request<C> {
  readonly id: number
  readonly command: C
}

export type Reply<V> =
  | { readonly id: number; readonly ok: true; readonly value: V }
  | { readonly id: number; readonly ok: false; readonly error: string }

export interface Ready {
  readonly ready: true
}

const isRequest = (value: unknown): value is Request<unknown> =>
  typeof value === "object" && value !== null && "id" in value && "command" in value

/**
 * Serves commands until the orchestrator goes away. `run` must check the command's shape itself
 * (IPC carries plain JSON); `shutdown` ends the process and is called on disconnect and at
 * `lifetimeMs`.
 */
export const runChild = <C>(options: {
  readonly entry: string
  readonly run: (command: C) => Promise<unknown>
  readonly shutdown: (code: number) => void
  readonly lifetimeMs: number
}): void => {
  if (process.send === undefined) {
    console.error(`${options.entry} is started by its orchestrator over IPC, not directly`)
    process.exit(2)
  }
  const send = (message: Reply<unknown> | Ready) => {
    if (process.send === undefined || !process.connected) return
    process.send(message)
  }
  process.on("message", (message: unknown) => {
    if (!isRequest(message)) return
    // The orchestrator only ever sends its own command set (workers.ts types the sending side).
    options.run(message.command as C).then(
      (value) => send({ id: message.id, ok: true, value }),
      (error: unknown) => send({ id: message.id, ok: false, error: messageOf(error) })
    )
  })
  process.on("disconnect", () => options.shutdown(0))
  setTimeout(() => options.shutdown(2), options.lifetimeMs).unref()
  // Stay alive while idle between commands even if the IPC handle ends up unref'd.
  const keepAlive = setInterval(() => undefined, 1 << 30)
  process.on("exit", () => clearInterval(keepAlive))
  send({ ready: true })
}
