import { Packet } from "../../src/wire/Packet.ts"
const p = new Uint8Array(69)
let t = performance.now(); let x: any
for (let i = 0; i < 1e6; i++) x = new Packet({ id: i, type: 3, payload: p.subarray(5) }, true)
console.log("new Packet(,true) us", (performance.now() - t) / 1e6 * 1000)
t = performance.now()
for (let i = 0; i < 1e6; i++) x = new Packet({ id: i & 0xff, type: 3, payload: p.subarray(5) })
console.log("new Packet() validated us", (performance.now() - t) / 1e6 * 1000)
t = performance.now()
for (let i = 0; i < 1e6; i++) x = { id: i, type: 3, payload: p.subarray(5) }
console.log("object us", (performance.now() - t) / 1e6 * 1000)
const proto = Packet.prototype
const make = (id: number, type: number, payload: Uint8Array): Packet => {
  const q = Object.create(proto) as { id: number; type: number; payload: Uint8Array }
  q.id = id
  q.type = type
  q.payload = payload
  return q as unknown as Packet
}
t = performance.now()
for (let i = 0; i < 1e6; i++) x = make(i, 3, p.subarray(5))
console.log("Object.create(Packet.prototype) us", (performance.now() - t) / 1e6 * 1000)
import { Equal } from "effect"
const a = make(1, 3, p), b = new Packet({ id: 1, type: 3, payload: p }, true)
console.log(a instanceof Packet, Equal.equals(a, b), String(a), JSON.stringify(Object.keys(a)), JSON.stringify(Object.keys(b)))
