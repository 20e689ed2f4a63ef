"""Multi-object tracking of vehicle blobs with stable ids through stops and occlusions.

Split by concern, as supervision's ByteTrack is: ``core`` runs the update loop,
``association`` decides which blob is which track's, ``track`` holds one track's state and
the frozen :class:`TrackView` that rules read, ``standing`` (with ``persistence``) finds
vehicles that stand where no track sees them, ``ghosts`` decides what is left over from the
first frames, and ``sizes`` knows what a vehicle measures.
"""

from services.detector.tracker.core import Tracker, TrackerSettings
from services.detector.tracker.ghosts import LeftPlace, Released
from services.detector.tracker.sizes import side_by_side, vehicle_shaped, vehicles_across
from services.detector.tracker.standing import StandingRegion, StandingRegions, StandingVehicles
from services.detector.tracker.track import Move, Stay, TrackView

__all__ = [
    "LeftPlace",
    "Move",
    "Released",
    "StandingRegion",
    "StandingRegions",
    "StandingVehicles",
    "Stay",
    "TrackView",
    "Tracker",
    "TrackerSettings",
    "side_by_side",
    "vehicle_shaped",
    "vehicles_across",
]
