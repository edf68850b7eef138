export default function ModelTraining() {
  return <h1>ModelTraining</h1>;
}
