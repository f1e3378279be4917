const fs=require("fs");const f=fs.readdirSync(".").filter(x=>x.endsWith(".cpuprofile"))[0];
const p=JSON.parse(fs.readFileSync(f));const self=new Map();const dt=p.timeDeltas;const idIdx=new Map(p.nodes.map((n,i)=>[n.id,n]));
const counts=new Map();for(let i=0;i<p.samples.length;i++){counts.set(p.samples[i],(counts.get(p.samples[i])||0)+(dt[i]||0))}
let tot=0;for(const [id,t] of counts){const n=idIdx.get(id);const k=n.callFrame.functionName+" "+n.callFrame.url.split("/").slice(-2).join("/")+":"+n.callFrame.lineNumber;self.set(k,(self.get(k)||0)+t);tot+=t}
[...self].sort((a,b)=>b[1]-a[1]).slice(0,Number(process.argv[2]||25)).forEach(([k,t])=>console.log((t/tot*100).toFixed(1)+"%",k))
