"""Evaluation: measuring planner and experts. (The full harness is still to come; routing
accuracy is here first because the planner's design depends on it.)"""

from sensorium.evals.routing import RoutingRow, RoutingScore, load_routing_rows, score_routing

__all__ = ["RoutingRow", "RoutingScore", "load_routing_rows", "score_routing"]
