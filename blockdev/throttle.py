"""I/O throttling: limit sets, their validation, and throttle groups.

Pure model of the `blockdev` layer [util/throttle.c, block/throttle-groups.c,
blockdev.c qmp_block_set_io_throttle, extract_common_blockdev_options].

A `ThrottleConfig` is six leaky buckets (bps total/read/write, iops total/read/write),
each with an average rate, an optional burst rate and a burst length, plus the iops
size. Limits are not set per BlockBackend but per *group*: every BlockBackend that
throttles is a member of exactly one named group (by default named after the drive),
members share the group's configuration, and setting limits through one member sets
them for all [throttle_group_config]. A group exists while it has members or while a
`throttle-group` object holds it. Each group keeps its buckets' levels
(`ThrottleState`): a request is charged when it goes (throttle_account), the buckets
leak at their rates on the Machine's clock (throttle_do_leak), and
`ThrottleState.wait` says how long the next request must wait
(throttle_compute_wait); `path_deadline`/`charge_path` do this for a BlockBackend's
group and every throttle filter node below it (`blockdev.io` is their caller). A BlockBackend joins and leaves its group
through `io_limits_enable`/`io_limits_disable` [block/block-backend.c
blk_io_limits_*]; a throttle filter node joins with `join`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import attrs

from schema.errors import GenericError

THROTTLE_VALUE_MAX = 1000000000000000

# BucketType order [include/qemu/throttle.h], with the QMP member stems of each bucket.
BUCKETS = ("bps", "bps_rd", "bps_wr", "iops", "iops_rd", "iops_wr")

# -drive / throttle-group option names of each bucket [blockdev.c, throttle-options.h].
DRIVE_OPTION = {
    "bps": "bps-total", "bps_rd": "bps-read", "bps_wr": "bps-write",
    "iops": "iops-total", "iops_rd": "iops-read", "iops_wr": "iops-write",
}

U64 = 2**64


@attrs.frozen
class Bucket:
    avg: int = 0
    max: int = 0
    burst_length: int = 1


@attrs.frozen
class ThrottleConfig:
    """A ThrottleConfig: values are uint64 as in QEMU (negative QMP values wrap)."""

    buckets: tuple[Bucket, ...] = (Bucket(),) * 6
    op_size: int = 0

    def bucket(self, stem: str) -> Bucket:
        return self.buckets[BUCKETS.index(stem)]

    def enabled(self) -> bool:
        """throttle_enabled: any average rate set."""
        return any(b.avg > 0 for b in self.buckets)

    def validate(self) -> None:
        """throttle_is_valid, in its order; the first failing check raises."""
        def b(stem: str) -> Bucket:
            return self.bucket(stem)

        bps_flag = b("bps").avg and (b("bps_rd").avg or b("bps_wr").avg)
        ops_flag = b("iops").avg and (b("iops_rd").avg or b("iops_wr").avg)
        bps_max_flag = b("bps").max and (b("bps_rd").max or b("bps_wr").max)
        ops_max_flag = b("iops").max and (b("iops_rd").max or b("iops_wr").max)
        if bps_flag or ops_flag or bps_max_flag or ops_max_flag:
            raise GenericError("bps/iops/max total values and read/write values "
                               "cannot be used at the same time")
        if self.op_size and not (b("iops").avg or b("iops_rd").avg or b("iops_wr").avg):
            raise GenericError("iops size requires an iops value to be set")
        for bkt in self.buckets:
            if bkt.avg > THROTTLE_VALUE_MAX or bkt.max > THROTTLE_VALUE_MAX:
                raise GenericError(
                    f"bps/iops/max values must be within [0, {THROTTLE_VALUE_MAX}]")
            if not bkt.burst_length:
                raise GenericError("the burst length cannot be 0")
            if bkt.burst_length > 1 and not bkt.max:
                raise GenericError("burst length set without burst rate")
            if bkt.max and bkt.burst_length > THROTTLE_VALUE_MAX // bkt.max:
                raise GenericError("burst length too high for this burst rate")
            if bkt.max and not bkt.avg:
                raise GenericError("bps_max/iops_max require corresponding bps/iops values")
            if bkt.max and bkt.max < bkt.avg:
                raise GenericError("bps_max/iops_max cannot be lower than bps/iops")

    @classmethod
    def from_qmp(cls, args: Mapping[str, Any]) -> ThrottleConfig:
        """The configuration qmp_block_set_io_throttle builds from its arguments
        (snake_case names as the handler receives them)."""
        buckets = []
        for stem in BUCKETS:
            buckets.append(Bucket(
                avg=int(args.get(stem) or 0) % U64,
                max=int(args.get(f"{stem}_max") or 0) % U64,
                burst_length=(int(args[f"{stem}_max_length"]) % U64
                              if args.get(f"{stem}_max_length") is not None else 1)))
        op_size = int(args["iops_size"]) % U64 if args.get("iops_size") is not None else 0
        return cls(buckets=tuple(buckets), op_size=op_size)

    @classmethod
    def from_options(cls, opts: Mapping[str, int], prefix: str = "throttling.") -> ThrottleConfig:
        """The configuration of parsed `throttling.*` options (-drive) or `limits.*`
        (throttle-group objects): missing values 0, burst lengths 1."""
        buckets = []
        for stem in BUCKETS:
            name = prefix + DRIVE_OPTION[stem]
            buckets.append(Bucket(avg=opts.get(name, 0), max=opts.get(name + "-max", 0),
                                  burst_length=opts.get(name + "-max-length", 1)))
        return cls(buckets=tuple(buckets), op_size=opts.get(prefix + "iops-size", 0))

    def query_fields(self) -> dict[str, Any]:
        """The throttle members of BlockDeviceInfo while throttling is active
        [block/qapi.c bdrv_block_device_info]: averages always, each max (and its
        length) only when non-zero, iops_size only when non-zero."""
        out: dict[str, Any] = {stem: self.bucket(stem).avg for stem in BUCKETS}
        for stem in BUCKETS:
            bkt = self.bucket(stem)
            if bkt.max:
                out[f"{stem}_max"] = bkt.max
                out[f"{stem}_max_length"] = bkt.burst_length
        if self.op_size:
            out["iops_size"] = self.op_size
        return out


def drive_option_descs(prefix: str = "throttling.") -> list[tuple[str, str]]:
    """THROTTLE_OPTS: (name, type) of every throttling option of -drive."""
    out = []
    for stem in BUCKETS:
        name = prefix + DRIVE_OPTION[stem]
        out += [(name, "number"), (name + "-max", "number"), (name + "-max-length", "number")]
    out.append((prefix + "iops-size", "number"))
    return out


class Throttled(Protocol):
    """A BlockBackend as its throttle group sees it: the group it is a member of."""

    throttle_group: str | None


# throttle_compute_wait_for / throttle_account: the buckets a read or a write uses.
_CHECK = {False: ("bps", "iops", "bps_rd", "iops_rd"), True: ("bps", "iops", "bps_wr", "iops_wr")}


@attrs.define(kw_only=True)
class ThrottleState:
    """ThrottleState: the level of each bucket (in bytes or operations) and when
    they last leaked (Machine clock seconds)."""

    config: ThrottleConfig | None = None  # the configuration the levels belong to
    level: list[float] = attrs.Factory(lambda: [0.0] * 6)
    burst_level: list[float] = attrs.Factory(lambda: [0.0] * 6)
    previous_leak: float = 0.0

    def _sync(self, config: ThrottleConfig, now: float) -> None:
        """throttle_config zeroes the levels of a new configuration; then
        throttle_do_leak up to `now`."""
        if self.config is not config:
            self.config = config
            self.level = [0.0] * 6
            self.burst_level = [0.0] * 6
            self.previous_leak = now
        delta = now - self.previous_leak
        self.previous_leak = now
        if delta <= 0:
            return
        for i, bkt in enumerate(config.buckets):
            self.level[i] = max(self.level[i] - bkt.avg * delta, 0.0)
            if bkt.burst_length > 1:
                self.burst_level[i] = max(self.burst_level[i] - bkt.max * delta, 0.0)

    def wait(self, config: ThrottleConfig, is_write: bool, now: float) -> float:
        """throttle_compute_timer: seconds the next request of this kind waits."""
        self._sync(config, now)
        longest = 0.0
        for stem in _CHECK[is_write]:
            i = BUCKETS.index(stem)
            bkt = config.buckets[i]
            if not bkt.avg:
                continue
            if not bkt.max:
                size, burst_size = bkt.avg / 10, 0.0
            else:
                size, burst_size = float(bkt.max * bkt.burst_length), bkt.max / 10
            extra = self.level[i] - size
            if extra > 0:
                longest = max(longest, extra / bkt.avg)
            elif bkt.burst_length > 1:
                extra = self.burst_level[i] - burst_size
                if extra > 0:
                    longest = max(longest, extra / bkt.max)
        return longest

    def account(self, config: ThrottleConfig, is_write: bool, size: int, now: float) -> None:
        """throttle_account."""
        self._sync(config, now)
        units = size / config.op_size if config.op_size and size > config.op_size else 1.0
        rw = "bps_wr" if is_write else "bps_rd"
        for stem, amount in (("bps", float(size)), (rw, float(size)), ("iops", units),
                             ("iops" + rw[3:], units)):
            i = BUCKETS.index(stem)
            self.level[i] += amount
            if config.buckets[i].burst_length > 1:
                self.burst_level[i] += amount


@attrs.define(kw_only=True, eq=False)
class ThrottleGroup:
    name: str
    config: ThrottleConfig = attrs.Factory(ThrottleConfig)
    members: list[object] = attrs.Factory(list)
    object_ref: bool = False  # held by a throttle-group object
    state: ThrottleState = attrs.Factory(ThrottleState)

    def wait(self, is_write: bool, now: float) -> float:
        if not self.config.enabled():
            return 0.0
        return self.state.wait(self.config, is_write, now)

    def account(self, is_write: bool, size: int, now: float) -> None:
        if self.config.enabled():
            self.state.account(self.config, is_write, size, now)


def _path_groups(blk: Any) -> list[ThrottleGroup]:
    """The throttle groups a request through `blk` passes: the BlockBackend's own,
    then each throttle filter node's down the `file` chain."""
    out: list[ThrottleGroup] = []
    tg = getattr(blk, "throttle_tg", None)
    if tg is not None and getattr(blk, "throttle_group", None) is not None:
        out.append(tg)
    bs = blk.bs
    while bs is not None and bs.driver is not None:
        if bs.driver.format_name == "throttle" and bs.state is not None:
            group = bs.state.extra.get("tg")
            if group is not None:
                out.append(group)
        bs = bs.file_bs
    return out


def path_deadline(blk: Any, op: str, nbytes: int, now: float) -> float:
    """When a request may go (throttle_group_co_io_limits_intercept's wait)."""
    is_write = op != "read"
    wait = 0.0
    for group in _path_groups(blk):
        wait = max(wait, group.wait(is_write, now))
    return now + wait


def charge_path(blk: Any, op: str, nbytes: int, now: float) -> None:
    """throttle_account in every group on the request's path."""
    is_write = op != "read"
    for group in _path_groups(blk):
        group.account(is_write, nbytes, now)


@attrs.define(kw_only=True)
class ThrottleGroups:
    """The process-wide table of throttle groups [block/throttle-groups.c]."""

    groups: dict[str, ThrottleGroup] = attrs.Factory(dict)

    def join(self, member: object, name: str) -> ThrottleGroup:
        """throttle_group_register_tgm: join (creating the group if needed)."""
        group = self.groups.get(name)
        if group is None:
            group = self.groups[name] = ThrottleGroup(name=name)
        group.members.append(member)
        return group

    def leave(self, member: object, name: str) -> None:
        """throttle_group_unregister_tgm: a group with no user left disappears."""
        group = self.groups[name]
        group.members.remove(member)
        if not group.members and not group.object_ref:
            del self.groups[name]

    def get(self, name: str) -> ThrottleGroup | None:
        return self.groups.get(name)

    def io_limits_enable(self, blk: Throttled, name: str) -> ThrottleGroup:
        """blk_io_limits_enable: the BlockBackend joins group `name`."""
        group = self.join(blk, name)
        blk.throttle_group = name
        blk.throttle_tg = group  # type: ignore[attr-defined]
        return group

    def io_limits_disable(self, blk: Throttled) -> None:
        """blk_io_limits_disable: the BlockBackend leaves its group."""
        assert blk.throttle_group is not None
        self.leave(blk, blk.throttle_group)
        blk.throttle_group = None
        blk.throttle_tg = None  # type: ignore[attr-defined]

    def io_limits_update_group(self, blk: Throttled, name: str) -> None:
        """blk_io_limits_update_group: move to group `name` (if not there already)."""
        if blk.throttle_group == name:
            return
        self.io_limits_disable(blk)
        self.io_limits_enable(blk, name)

    def add_object(self, name: str, config: ThrottleConfig) -> ThrottleGroup:
        """A `throttle-group` object (-object / object-add): validated limits."""
        config.validate()
        group = self.groups.get(name)
        if group is None:
            group = self.groups[name] = ThrottleGroup(name=name)
        group.object_ref = True
        group.config = config
        return group
