"""Seeded, deterministic VSP/VSC scenarios, looked up by name."""

from vmbtool.scenarios.base import Scenario, ScenarioError
from vmbtool.scenarios.network import NetworkScenario
from vmbtool.scenarios.pipe import PipeScenario
from vmbtool.scenarios.storage import StorageScenario

SCENARIOS: dict[str, type[Scenario]] = {
    cls.name: cls for cls in (StorageScenario, NetworkScenario, PipeScenario)
}
DEFAULT_SCENARIO = "storage"

__all__ = ["DEFAULT_SCENARIO", "SCENARIOS", "Scenario", "ScenarioError"]
