/**
 * The server under attack: `serve` with default options, a password and encryption, on port 0,
 * through the public API only. Two listeners in the one process, so that the process's RSS counts
 * both: the echo server every attack and the legitimate client use, and a server whose handler
 * takes one packet and then stops reading (attack `stalled-handler`).
 */
import { Effect, Exit, Fiber } from "effect"
import { Packet, PacketType, serve } from "../src/index.js"
import type { Session } from "../src/index.js"
import type { Ports } from "./protocol.js"

const echo = (session: Session) =>
  session.serve((packet) => Effect.succeed(new Packet({ id: packet.id, type: PacketType.RESPONSE, payload: packet.payload }, true)))

const stall = (session: Session) => Effect.zipRight(session.receive(), Effect.never)

const running: Array<Fiber.RuntimeFiber<never, unknown>> = []

const listen = (password: string, handler: (session: Session) => Effect.Effect<unknown, unknown>) =>
  new Promise<number>((resolve, reject) => {
    const fiber: Fiber.RuntimeFiber<never, unknown> = Effect.runFork(
      serve({ port: 0, password, onListen: (address) => Effect.sync(() => resolve(address.port)) }, handler)
    )
    running.push(fiber)
    fiber.addObserver((exit) => {
      if (Exit.isFailure(exit)) reject(new Error(`server ended: ${String(exit.cause)}`))
    })
  })

export const startServer = async (password: string): Promise<Ports> => ({
  echo: await listen(password, echo),
  stall: await listen(password, stall)
})

export const stopServers = async (): Promise<void> => {
  await Promise.all(running.splice(0).map((fiber) => Effect.runPromise(Fiber.interrupt(fiber))))
}
