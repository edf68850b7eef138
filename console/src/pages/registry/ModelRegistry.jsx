export default function ModelRegistry() {
  return <h1>ModelRegistry</h1>;
}
