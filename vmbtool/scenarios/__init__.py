"""Seeded, deterministic VSP/VSC scenarios, looked up by name."""

from uuid import UUID

from vmbtool.scenarios.base import Scenario, ScenarioError
from vmbtool.scenarios.network import NetworkScenario
from vmbtool.scenarios.pipe import PipeScenario
from vmbtool.scenarios.storage import StorageScenario

SCENARIOS: dict[str, type[Scenario]] = {
    cls.name: cls for cls in (StorageScenario, NetworkScenario, PipeScenario)
}
DEFAULT_SCENARIO = "storage"


def by_interface(interface_type: UUID) -> type[Scenario] | None:
    """The scenario whose channels offer `interface_type` (a restore picks its VSP by
    it); looked up when asked, so a scenario registered later is found too."""
    return next((cls for cls in SCENARIOS.values() if cls.interface_type == interface_type),
                None)

__all__ = ["DEFAULT_SCENARIO", "by_interface", "SCENARIOS", "Scenario", "ScenarioError"]
