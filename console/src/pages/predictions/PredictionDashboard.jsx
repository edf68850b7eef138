export default function PredictionDashboard() {
  return <h1>PredictionDashboard</h1>;
}
