export default function MemoryGraph() {
  return <h1>MemoryGraph</h1>;
}
