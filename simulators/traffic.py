"""A deterministic traffic model of one camera's view, stepped at the camera's frame rate.

Vehicles follow their lane with a safe-speed rule (never faster than lets them stop behind
the vehicle ahead, the stop line or their parking spot), and their position is clamped to
that limit, so two vehicles in a lane can never overlap. Scripted cases are woven in at
planned times: red-light runners and lawful amber crossers at intersections; zone
violators, brief stops and legal parkers at streets. The model only moves boxes; whether a
movement is a violation is decided afterwards from the boxes alone (:mod:`simulators.truth`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from enum import StrEnum

from simulators.config import CameraTraffic, SignalTiming
from simulators.layout import (
    MERGE_PX,
    NATIVE_WH,
    DirectionXY,
    IntersectionLayout,
    Lane,
    Layout,
    Slot,
    StreetLayout,
)

ACCEL_PX_S2 = 60.0  # about 3 m/s^2 at 20 px/m
BRAKE_PX_S2 = 100.0  # a firm but comfortable 5 m/s^2
MIN_GAP_PX = 14.0
STOP_GAP_PX = 8.0
# A driver who cannot stop at amber onset goes only if the centre clears the line this much
# before red, so a lawful amber crossing is never within a frame or two of red.
AMBER_CLEAR_MARGIN_S = 0.8
PREROLL_S = 8.0
MAX_PENDING_ARRIVALS = 3
# Natural arrivals are held back in a scripted vehicle's lane for this long before it
# crosses, so the lane ahead of it is empty and it reaches the line when planned.
SCRIPT_CLEAR_S = 14.0


class Phase(StrEnum):
    GREEN = "green"
    AMBER = "amber"
    RED = "red"


class VehicleKind(StrEnum):
    CAR = "car"
    VAN = "van"
    BUS = "bus"
    MOTORBIKE = "motorbike"
    BICYCLE = "bicycle"


class Role(StrEnum):
    """Why a vehicle was put in the scene; the truth never reads this, tests compare with it."""

    THROUGH = "through"
    RUNNER = "red_light_runner"
    AMBER_CROSSER = "amber_crosser"
    ZONE_VIOLATOR = "zone_violator"
    BRIEF_STOP = "brief_stop"
    LEGAL_PARKER = "legal_parker"
    # The head of a queue waiting at red that pulls out and crosses on red.
    QUEUE_PULLOUT = "queue_pullout"
    # The head of a queue that creeps over the line on red and stops there.
    CREEPER = "creeper"


@dataclass(frozen=True, slots=True)
class Body:
    kind: VehicleKind
    length: float
    width: float
    colour_bgr: tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class Placed:
    """One vehicle in one frame, in native pixels; ``heading`` is its direction of travel."""

    vehicle_id: int
    body: Body
    box_xyxy: tuple[float, float, float, float]
    heading: DirectionXY


@dataclass(frozen=True, slots=True)
class Trajectory:
    fps: float
    frames: list[tuple[Placed, ...]]
    phases: list[Phase] | None
    roles: dict[int, Role]


# Common car colours, including near-black ones and greys close to asphalt, which are the
# hard cases for a background-subtraction detector.
_COLOURS: tuple[tuple[int, int, int], ...] = (
    (235, 235, 235),
    (200, 200, 205),
    (150, 152, 155),
    (92, 94, 96),
    (32, 32, 34),
    (110, 50, 25),
    (40, 40, 180),
    (50, 110, 50),
    (40, 190, 225),
    (130, 110, 90),
)
_BUS_COLOURS: tuple[tuple[int, int, int], ...] = ((60, 150, 40), (170, 110, 30), (230, 230, 230))


# Speeds in native px/s (20 px/m): a rider in town, a cyclist.
MOTORBIKE_SPEED = (110.0, 160.0)
BICYCLE_SPEED = (60.0, 90.0)
# A creeping rider inches forward at walking pace, to this far past the line (centre).
CREEP_SPEED = 30.0
CREEP_PAST_PX = 12.0


def two_wheeler_body(rng: random.Random) -> Body:
    """A motorbike (two in three) or a bicycle, with its rider (native px)."""
    if rng.random() < 2 / 3:
        return Body(
            VehicleKind.MOTORBIKE, rng.uniform(38, 46), rng.uniform(15, 19), rng.choice(_COLOURS)
        )
    return Body(VehicleKind.BICYCLE, rng.uniform(34, 38), rng.uniform(11, 13), rng.choice(_COLOURS))


def random_body(rng: random.Random, *, allow_bus: bool = True) -> Body:
    """A car, van or bus of a plausible size (native px: a car is about 4.5 m = 90 px)."""
    roll = rng.random()
    if allow_bus and roll < 0.1:
        return Body(VehicleKind.BUS, rng.uniform(190, 230), 56, rng.choice(_BUS_COLOURS))
    if roll < 0.28:
        return Body(
            VehicleKind.VAN, rng.uniform(106, 120), rng.uniform(46, 50), rng.choice(_COLOURS)
        )
    return Body(VehicleKind.CAR, rng.uniform(72, 104), rng.uniform(38, 46), rng.choice(_COLOURS))


@dataclass(frozen=True, slots=True)
class SignalPlan:
    timing: SignalTiming

    def phase_at(self, t_s: float) -> Phase:
        u = (t_s + self.timing.offset_s) % self.timing.cycle_s
        if u < self.timing.green_s:
            return Phase.GREEN
        return Phase.AMBER if u < self.timing.green_s + self.timing.amber_s else Phase.RED

    def cycle_at(self, t_s: float) -> int:
        return math.floor((t_s + self.timing.offset_s) / self.timing.cycle_s)

    def amber_start(self, cycle: int) -> float:
        return cycle * self.timing.cycle_s + self.timing.green_s - self.timing.offset_s

    def red_start(self, cycle: int) -> float:
        return self.amber_start(cycle) + self.timing.amber_s


class _State(StrEnum):
    DRIVING = "driving"
    PARKED = "parked"
    LEAVING = "leaving"


@dataclass(slots=True)
class _Vehicle:
    vehicle_id: int
    body: Body
    lane: int
    s: float
    v: float
    v_desired: float
    scripted: bool = False
    committed: bool = False
    decided_cycle: int | None = None
    slot: Slot | None = None
    park_s: float = 0.0
    dwell_s: float = 0.0
    depart_at: float = 0.0
    state: _State = _State.DRIVING
    kerb_p: float = 0.0
    # Creeping over the line on red (then stopped past it until green), and the speed it
    # drives at again after.
    creeping: bool = False
    cruise_v: float = 0.0

    @property
    def rear(self) -> float:
        return self.s - self.body.length


@dataclass(slots=True)
class _Script:
    """A planned vehicle: spawned at ``spawn_t`` in ``lane`` with a fixed speed."""

    spawn_t: float
    lane: int
    body: Body
    speed: float
    role: Role


@dataclass(slots=True)
class _QueueAct:
    """At ``due_t``, during red, the head of a queue waiting at the line does ``role``."""

    due_t: float
    role: Role


@dataclass(slots=True)
class _Visit:
    due_t: float
    role: Role


@dataclass
class _World:
    layout: Layout
    traffic: CameraTraffic
    dt: float
    rng: random.Random
    lanes: list[list[_Vehicle]] = field(default_factory=list)
    parked: list[_Vehicle] = field(default_factory=list)
    arrivals: list[list[float]] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    scripts: list[_Script] = field(default_factory=list)
    holds: list[list[tuple[float, float]]] = field(default_factory=list)
    visits: list[_Visit] = field(default_factory=list)
    busy_slots: set[int] = field(default_factory=set)
    roles: dict[int, Role] = field(default_factory=dict)
    next_id: int = 1

    @property
    def lane_defs(self) -> tuple[Lane, ...]:
        return self.layout.lanes

    # -- spawning ----------------------------------------------------------------------------

    def entry_speed(self, lane: int, v_desired: float) -> float | None:
        """The speed a new vehicle may enter ``lane`` at, or None if the entry is blocked."""
        vehicles = self.lanes[lane]
        if not vehicles:
            return v_desired
        last = vehicles[-1]
        gap = last.rear - MIN_GAP_PX
        if gap <= 0:
            return None
        return min(v_desired, math.sqrt(2 * BRAKE_PX_S2 * gap + last.v**2))

    def spawn(self, lane: int, body: Body, v_desired: float, speed: float, role: Role) -> _Vehicle:
        vehicle = _Vehicle(
            vehicle_id=self.next_id, body=body, lane=lane, s=0.0, v=speed, v_desired=v_desired
        )
        self.next_id += 1
        self.lanes[lane].append(vehicle)
        self.roles[vehicle.vehicle_id] = role
        return vehicle

    def spawn_arrivals(self, t: float) -> None:
        for lane, times in enumerate(self.arrivals):
            while times and times[0] <= t:
                times.pop(0)
                self.pending[lane] = min(self.pending[lane] + 1, MAX_PENDING_ARRIVALS)
            if any(start <= t <= end for start, end in self.holds[lane]):
                self.pending[lane] = 0
            if self.pending[lane] == 0:
                continue
            arrival = self.arrival(lane)
            if arrival is not None:
                self.pending[lane] -= 1
                self.spawn(lane, *arrival, Role.THROUGH)

    def arrival(self, lane: int) -> tuple[Body, float, float] | None:
        """A natural arrival's body, desired and entry speed, or None while the entry is
        blocked."""
        share = self.traffic.two_wheeler_share
        # Without two-wheelers the numbers are drawn as they always were (speed, then body
        # once the entry is free), so such traffic stays exactly as it was.
        if share > 0 and self.rng.random() < share:
            body = two_wheeler_body(self.rng)
            low, high = MOTORBIKE_SPEED if body.kind is VehicleKind.MOTORBIKE else BICYCLE_SPEED
            v_desired = self.rng.uniform(low, high)
            speed = self.entry_speed(lane, v_desired)
            return None if speed is None else (body, v_desired, speed)
        v_desired = self.rng.uniform(140, 190)
        speed = self.entry_speed(lane, v_desired)
        return None if speed is None else (random_body(self.rng), v_desired, speed)

    def spawn_scripts(self, t: float, stop_s: float) -> None:
        while self.scripts and self.scripts[0].spawn_t <= t:
            script = self.scripts.pop(0)
            ahead_clear = all(v.s - v.body.length / 2 >= stop_s for v in self.lanes[script.lane])
            if ahead_clear and self.entry_speed(script.lane, script.speed) == script.speed:
                vehicle = self.spawn(
                    script.lane, script.body, script.speed, script.speed, script.role
                )
                vehicle.scripted = vehicle.committed = True

    # -- moving ------------------------------------------------------------------------------

    def move(self, vehicle: _Vehicle, leader: _Vehicle | None, stop_at: float | None) -> None:
        """Advance one step at the safe speed, never past the leader or ``stop_at``."""
        speed = min(vehicle.v_desired, vehicle.v + ACCEL_PX_S2 * self.dt)
        limit = math.inf
        if leader is not None:
            limit = leader.rear - MIN_GAP_PX
            gap = max(limit - vehicle.s, 0.0)
            speed = min(speed, math.sqrt(2 * BRAKE_PX_S2 * gap + leader.v**2))
        if stop_at is not None:
            limit = min(limit, stop_at)
            speed = min(speed, math.sqrt(2 * BRAKE_PX_S2 * max(stop_at - vehicle.s, 0.0)))
        new_s = max(vehicle.s, min(vehicle.s + max(speed, 0.0) * self.dt, limit))
        vehicle.v = (new_s - vehicle.s) / self.dt
        vehicle.s = new_s

    def drop_departed(self) -> None:
        for lane, vehicles in enumerate(self.lanes):
            exit_s = self.lane_defs[lane].exit_s
            self.lanes[lane] = [v for v in vehicles if v.rear <= exit_s]

    def snapshot(self) -> tuple[Placed, ...]:
        placed = [
            _place(v, self.lane_defs[v.lane]) for vehicles in self.lanes for v in vehicles
        ] + [_place(v, self.lane_defs[v.lane]) for v in self.parked]
        width, height = NATIVE_WH
        visible = [
            p
            for p in placed
            if p.box_xyxy[2] > 0
            and p.box_xyxy[0] < width
            and p.box_xyxy[3] > 0
            and p.box_xyxy[1] < height
        ]
        return tuple(sorted(visible, key=lambda p: p.vehicle_id))


def _place(vehicle: _Vehicle, lane: Lane) -> Placed:
    cx, cy = lane.point(vehicle.s - vehicle.body.length / 2, kerb_p=vehicle.kerb_p)
    half_along, half_across = vehicle.body.length / 2, vehicle.body.width / 2
    hw, hh = (half_across, half_along) if lane.vertical else (half_along, half_across)
    return Placed(
        vehicle_id=vehicle.vehicle_id,
        body=vehicle.body,
        box_xyxy=(cx - hw, cy - hh, cx + hw, cy + hh),
        heading=lane.direction_xy,
    )


def _poisson_times(rng: random.Random, per_min: float, start_s: float, end_s: float) -> list[float]:
    times: list[float] = []
    if per_min <= 0:
        return times
    t = start_s + rng.expovariate(per_min / 60)
    while t < end_s:
        times.append(t)
        t += rng.expovariate(per_min / 60)
    return times


def _jittered_times(
    rng: random.Random, per_min: float, start_s: float, end_s: float
) -> list[float]:
    """Roughly evenly spaced times: scripted cases should not bunch up like Poisson arrivals."""
    times: list[float] = []
    if per_min <= 0:
        return times
    t = start_s + rng.uniform(0, 60 / per_min)
    while t < end_s:
        times.append(t)
        t += 60 / per_min * rng.uniform(0.6, 1.4)
    return times


def _smooth(p: float) -> float:
    p = min(max(p, 0.0), 1.0)
    return p * p * (3 - 2 * p)


# -- intersection ------------------------------------------------------------------------------


class _Intersection:
    def __init__(self, world: _World, layout: IntersectionLayout, duration_s: float) -> None:
        self.world = world
        self.layout = layout
        self.signal = SignalPlan(world.traffic.signal)
        self.stop_s = layout.approach[0].stop_s or 0.0
        self._plan(duration_s)
        self.queue_acts = self._plan_queue_acts(duration_s)

    def _plan(self, duration_s: float) -> None:
        world, traffic, rng = self.world, self.world.traffic, self.world.rng
        timing = traffic.signal
        n_approach = len(self.layout.approach)
        holds = world.holds = [[] for _ in self.layout.lanes]
        first, last = self.signal.cycle_at(0.0), self.signal.cycle_at(duration_s)
        for cycle in range(first, last + 1):
            targets: list[tuple[float, Role]] = []
            # At most two runners per red phase, at least 3 s apart, so that each event is
            # unambiguous; none in the first or last seconds of red.
            runners = int(traffic.red_light_runners_per_cycle)
            runners += rng.random() < traffic.red_light_runners_per_cycle - runners
            window = timing.red_s - 4.0
            target = self.signal.red_start(cycle) + 1.5
            slack = (window - 3.0 * (runners - 1)) / max(runners, 1)
            for _ in range(runners):
                target += rng.uniform(0, slack)
                targets.append((target, Role.RUNNER))
                target += 3.0
            if rng.random() < traffic.amber_crossers_per_cycle:
                amber0 = self.signal.amber_start(cycle)
                late = timing.amber_s - AMBER_CLEAR_MARGIN_S - 0.5
                targets.append((amber0 + rng.uniform(0.4, late), Role.AMBER_CROSSER))
            lanes = rng.sample(range(n_approach), k=min(len(targets), n_approach))
            for (target, role), lane in zip(targets, lanes, strict=False):
                body = random_body(rng)
                speed = rng.uniform(175, 215)
                spawn_t = target - (self.stop_s + body.length / 2) / speed
                if spawn_t < 1.0 or target > duration_s:
                    continue
                world.scripts.append(_Script(spawn_t, lane, body, speed, role))
                holds[lane].append((target - SCRIPT_CLEAR_S, spawn_t + 1.0))
        world.scripts.sort(key=lambda s: s.spawn_t)
        for _lane in self.layout.lanes:
            world.arrivals.append(
                _poisson_times(rng, traffic.arrivals_per_min, -PREROLL_S, duration_s)
            )

    def _plan_queue_acts(self, duration_s: float) -> list[_QueueAct]:
        """When queue heads pull out or creep: each red phase may hold one of each, once a
        queue has had time to form and early enough to cross before green."""
        traffic, rng = self.world.traffic, self.world.rng
        acts: list[_QueueAct] = []
        first, last = self.signal.cycle_at(0.0), self.signal.cycle_at(duration_s)
        for cycle in range(first, last + 1):
            red0 = self.signal.red_start(cycle)
            start = max(red0 + 3.0, 0.5)
            end = min(red0 + traffic.signal.red_s - 3.0, duration_s - 4.0)
            for role, per_red in (
                (Role.QUEUE_PULLOUT, traffic.queue_pullouts_per_red),
                (Role.CREEPER, traffic.creepers_per_red),
            ):
                if per_red > 0 and end > start and rng.random() < per_red:
                    acts.append(_QueueAct(rng.uniform(start, end), role))
        return sorted(acts, key=lambda act: act.due_t)

    def _queue_head(self) -> _Vehicle | None:
        """A vehicle waiting at the stop line at the head of its lane, if any."""
        stop_point = self.stop_s - STOP_GAP_PX
        for lane in range(len(self.layout.approach)):
            waiting = [v for v in self.world.lanes[lane] if v.s - v.body.length / 2 < self.stop_s]
            if waiting and not waiting[0].scripted:
                head = waiting[0]
                if head.v < 1.0 and head.s >= stop_point - 2.0:
                    return head
        return None

    def _start_queue_acts(self, t: float, phase: Phase) -> None:
        for act in list(self.queue_acts):
            if act.due_t > t:
                break
            head = self._queue_head() if phase is Phase.RED else None
            if phase is not Phase.RED or head is not None:
                self.queue_acts.remove(act)
            if head is None:
                continue
            head.scripted = True
            self.world.roles[head.vehicle_id] = act.role
            if act.role is Role.QUEUE_PULLOUT:
                head.committed = True
            else:
                head.creeping, head.cruise_v, head.v_desired = True, head.v_desired, CREEP_SPEED

    def step(self, t: float) -> None:
        world = self.world
        world.spawn_scripts(t, self.stop_s)
        world.spawn_arrivals(t)
        phase = self.signal.phase_at(t)
        cycle = self.signal.cycle_at(t)
        self._start_queue_acts(t, phase)
        for lane, vehicles in enumerate(world.lanes):
            controlled = lane < len(self.layout.approach)
            for i, vehicle in enumerate(vehicles):
                stop_at = self._signal_stop(vehicle, phase, cycle, t) if controlled else None
                world.move(vehicle, vehicles[i - 1] if i else None, stop_at)
        world.drop_departed()

    def _signal_stop(self, vehicle: _Vehicle, phase: Phase, cycle: int, t: float) -> float | None:
        if vehicle.creeping:
            if phase is not Phase.GREEN:
                return self.stop_s + vehicle.body.length / 2 + CREEP_PAST_PX
            vehicle.creeping, vehicle.v_desired = False, vehicle.cruise_v
        stop_point = self.stop_s - STOP_GAP_PX
        if phase is Phase.GREEN:
            if not vehicle.scripted:
                vehicle.committed = False
            return None
        if vehicle.committed or vehicle.s - vehicle.body.length / 2 >= self.stop_s:
            return None
        if vehicle.decided_cycle != cycle:
            vehicle.decided_cycle = cycle
            vehicle.committed = not self._can_stop(vehicle, stop_point) and (
                vehicle.s > stop_point or self._clears_before_red(vehicle, phase, cycle, t)
            )
        return None if vehicle.committed else stop_point

    @staticmethod
    def _can_stop(vehicle: _Vehicle, stop_point: float) -> bool:
        return stop_point - vehicle.s >= vehicle.v**2 / (2 * BRAKE_PX_S2)

    def _clears_before_red(self, vehicle: _Vehicle, phase: Phase, cycle: int, t: float) -> bool:
        if phase is not Phase.AMBER or vehicle.v <= 0:
            return False
        to_cross_s = (self.stop_s + vehicle.body.length / 2 - vehicle.s) / vehicle.v
        return to_cross_s <= self.signal.red_start(cycle) - t - AMBER_CLEAR_MARGIN_S


# -- street ------------------------------------------------------------------------------------

_NEAR, _FAR = 0, 1


class _Street:
    def __init__(self, world: _World, layout: StreetLayout, duration_s: float) -> None:
        self.world = world
        self.layout = layout
        traffic, rng = world.traffic, world.rng
        for _lane in layout.lanes:
            world.holds.append([])
            world.arrivals.append(
                _poisson_times(rng, traffic.through_per_min, -PREROLL_S, duration_s)
            )
        plan = (
            (Role.ZONE_VIOLATOR, traffic.zone_violators_per_min),
            (Role.BRIEF_STOP, traffic.brief_stops_per_min),
            (Role.LEGAL_PARKER, traffic.legal_parkers_per_min),
        )
        for role, per_min in plan:
            world.visits += [
                _Visit(t, role) for t in _jittered_times(rng, per_min, 0.5, duration_s)
            ]
        world.visits += [
            _Visit(-PREROLL_S + 0.5 + 1.5 * k, Role.ZONE_VIOLATOR)
            for k in range(traffic.zone_violators_at_start)
        ]
        world.visits.sort(key=lambda v: v.due_t)
        self.violation_etas: list[float] = []

    def step(self, t: float) -> None:
        world = self.world
        self._start_visits(t)
        world.spawn_arrivals(t)
        for vehicles in world.lanes:
            for i, vehicle in enumerate(vehicles):
                stop_at = (
                    vehicle.park_s if vehicle.slot and vehicle.state is _State.DRIVING else None
                )
                world.move(vehicle, vehicles[i - 1] if i else None, stop_at)
                self._update_kerb(vehicle)
        self._park_arrivals(t)
        self._leave(t)
        world.drop_departed()

    def _start_visits(self, t: float) -> None:
        world = self.world
        for visit in list(world.visits):
            if visit.due_t > t:
                break
            # A visit waits a while for a free slot and a gap at the entry, then is given up.
            if t - visit.due_t > 12.0 or self._try_visit(visit, t):
                world.visits.remove(visit)

    def _try_visit(self, visit: _Visit, t: float) -> bool:
        world, rng = self.world, self.world.rng
        want_zone = visit.role is not Role.LEGAL_PARKER
        free = [
            i
            for i, slot in enumerate(self.layout.slots)
            if (slot.zone is not None) == want_zone and i not in world.busy_slots
        ]
        v_desired = rng.uniform(130, 170)
        if not free or world.entry_speed(_NEAR, v_desired) is None:
            return False
        index = rng.choice(free)
        slot = self.layout.slots[index]
        lane = self.layout.near
        park_s = lane.s_of(((slot.x0 + slot.x1) / 2, 0.0))
        parked_t = t + park_s / v_desired + 1.0
        # A stay that began in the pre-roll is seen, and timed, from frame 0.
        seen_parked_t = max(parked_t, 0.0)
        if visit.role is Role.ZONE_VIOLATOR and slot.zone is not None:
            # Events at least ~4 s apart (allowing for the estimate's error) keep truth clear.
            eta = seen_parked_t + slot.zone.max_dwell_s
            if any(abs(eta - other) < 5.0 for other in self.violation_etas):
                return False
            self.violation_etas.append(eta)
        body = random_body(rng, allow_bus=visit.role is Role.BRIEF_STOP)
        if body.length > slot.length - 20:
            body = random_body(rng, allow_bus=False)
        speed = world.entry_speed(_NEAR, v_desired) or 0.0
        vehicle = world.spawn(_NEAR, body, v_desired, speed, visit.role)
        vehicle.slot = slot
        vehicle.park_s = park_s + body.length / 2
        # The dwell the camera sees, from frame 0 for a stay that began before it, is that
        # of any other visit.
        vehicle.dwell_s = self._dwell(visit.role, slot) + (seen_parked_t - parked_t)
        world.busy_slots.add(index)
        return True

    def _dwell(self, role: Role, slot: Slot) -> float:
        rng = self.world.rng
        if slot.zone is None:
            return rng.uniform(6, 30)
        max_dwell = slot.zone.max_dwell_s
        if role is Role.ZONE_VIOLATOR:
            return max_dwell + rng.uniform(2, 6)
        # Half the limit leaves room to wait for a gap in traffic before pulling out.
        return rng.uniform(2, max_dwell / 2)

    def _update_kerb(self, vehicle: _Vehicle) -> None:
        if vehicle.slot is None:
            return
        progress = (vehicle.s - vehicle.park_s) / MERGE_PX
        if vehicle.state is _State.DRIVING:
            vehicle.kerb_p = _smooth(progress + 1)
        elif vehicle.state is _State.LEAVING:
            vehicle.kerb_p = 1 - _smooth(progress)
            if progress >= 1:
                self.world.busy_slots.discard(self.layout.slots.index(vehicle.slot))
                vehicle.state, vehicle.slot = _State.DRIVING, None

    def _park_arrivals(self, t: float) -> None:
        world = self.world
        near = world.lanes[_NEAR]
        for vehicle in [v for v in near if v.slot and v.state is _State.DRIVING]:
            if vehicle.s >= vehicle.park_s:
                vehicle.state, vehicle.v, vehicle.depart_at = (
                    _State.PARKED,
                    0.0,
                    t + vehicle.dwell_s,
                )
                near.remove(vehicle)
                world.parked.append(vehicle)

    def _leave(self, t: float) -> None:
        world = self.world
        near = world.lanes[_NEAR]
        for vehicle in [v for v in world.parked if v.depart_at <= t]:
            behind = [u for u in near if u.s <= vehicle.s]
            room = vehicle.rear - MIN_GAP_PX
            if all(room - u.s >= u.v**2 / (2 * BRAKE_PX_S2) for u in behind):
                world.parked.remove(vehicle)
                vehicle.state = _State.LEAVING
                near.append(vehicle)
                near.sort(key=lambda u: -u.s)


def simulate_traffic(
    layout: Layout, traffic: CameraTraffic, *, fps: float, n_frames: int, seed_key: str
) -> Trajectory:
    """Run the model for ``n_frames`` frames; the same ``seed_key`` gives the same trajectory.

    The scene is already busy at frame 0: the model runs ``PREROLL_S`` seconds of ordinary
    traffic first, and scripted cases start after frame 0.
    """
    world = _World(layout=layout, traffic=traffic, dt=1 / fps, rng=random.Random(seed_key))
    world.lanes = [[] for _ in layout.lanes]
    world.pending = [0 for _ in layout.lanes]
    duration_s = n_frames / fps
    model: _Intersection | _Street = (
        _Intersection(world, layout, duration_s)
        if isinstance(layout, IntersectionLayout)
        else _Street(world, layout, duration_s)
    )
    frames: list[tuple[Placed, ...]] = []
    for i in range(-round(PREROLL_S * fps), n_frames):
        model.step(i / fps)
        if i >= 0:
            frames.append(world.snapshot())
    phases = None
    if isinstance(model, _Intersection):
        phases = [model.signal.phase_at(i / fps) for i in range(n_frames)]
    return Trajectory(fps=fps, frames=frames, phases=phases, roles=world.roles)
