export default function AIAssistantConfig() {
  return <h1>AIAssistantConfig</h1>;
}
