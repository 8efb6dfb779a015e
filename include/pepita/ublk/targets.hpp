#pragma once
// The block devices a ublk server can expose: null, mem, file and zram, described by the shared
// block-target spec (pepita/blk_mq/target_spec.hpp: null:1G, mem:1G, file:PATH, zram:1G,zstd) and
// built by its one constructor (pepita/zram/block_target.hpp). These names keep ublk's own
// spelling of them (ublk::TargetSpec, ublk::make_target) working.
//
//   auto spec = PEPITA_TRY(parse_target_spec("zram:1G,zstd"));
//   auto server = PEPITA_TRY(Server::start(PEPITA_TRY(make_target(spec)), options));

#include "pepita/blk_mq/null_disk.hpp"
#include "pepita/blk_mq/target_spec.hpp"
#include "pepita/core/size.hpp"
#include "pepita/zram/block_target.hpp"

namespace pepita::ublk {

using blk_mq::NullDisk;
using blk_mq::parse_target_kind;
using blk_mq::parse_target_spec;
using blk_mq::target_name;
using blk_mq::TargetKind;
using blk_mq::TargetSpec;
using blk_mq::validate_target;
using pepita::parse_size;
using zram::make_target;

}  // namespace pepita::ublk
