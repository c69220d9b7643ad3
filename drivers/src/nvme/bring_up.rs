//! Bring-up of an NVMe controller: disable (CSTS.RDY 0 within CAP.TO), give
//! the admin queue (AQA, ASQ, ACQ), enable, Identify Controller and Namespace,
//! then Create I/O Completion Queue and Submission Queue 1; and what the
//! controller holds from then on ([`Shared`]).
//!
//! A bring-up that fails part-way gives back every piece of memory it took
//! (admin queues, Identify page, I/O queues and list pages), but only once the
//! controller is confirmed disabled (CSTS.RDY 0): until then it may still
//! write any of them. One that cannot be confirmed keeps them, leaked on
//! purpose and logged ([`Taken`]).

use dmakit::dma::{CoherentMemory, DmaPlatform, IoFailure, Specification};
use dmakit::io::RegisterIo;

use super::controller::Controller;
use super::data_pointer::{DataPointerChoice, SGL_DESCRIPTORS_PER_PAGE, prp_entries_in, prp_list_pages};
use super::disk::{ADMIN_ENTRIES, Link, MAX_DEPTH, NvmeOptions};
use super::identify::{ControllerIdentity, IDENTIFY_BYTES, NamespaceIdentity};
use super::queue::QueuePair;
use super::registers::*;
use super::structures::*;

/// What the controller is given at bring-up and forgets when disabled.
pub(super) struct Shared {
    pub(super) admin: QueuePair,
    pub(super) io: QueuePair,
    /// Every slot's list pages, `list_pages` each.
    pub(super) lists: CoherentMemory,
}

impl Shared {
    /// Frees everything: only once the controller was disabled (CSTS.RDY 0).
    pub(super) fn release(self) {
        self.admin.release();
        self.io.release();
        if let Err(failure) = self.lists.release() {
            log::error!("Nvme: list memory not released: {failure}");
        }
    }

    /// Leaks everything, on purpose: a controller that never confirmed a
    /// disable may read or write any of it at any time.
    pub(super) fn abandon(self) {
        log::error!("Nvme: the queues and lists of a controller that did not stop are leaked, not freed under it");
        core::mem::forget(self);
    }
}

/// What a bring-up took so far that the controller may have been told of:
/// given back together once it is confirmed disabled, or leaked together.
#[derive(Default)]
struct Taken {
    admin: Option<QueuePair>,
    identify: Option<CoherentMemory>,
    lists: Option<CoherentMemory>,
    io: Option<QueuePair>,
}

impl Taken {
    /// Frees everything: the controller was confirmed disabled.
    fn release(self) {
        let Taken { admin, identify, lists, io } = self;
        admin.into_iter().chain(io).for_each(QueuePair::release);
        for memory in identify.into_iter().chain(lists) {
            if let Err(failure) = memory.release() {
                log::error!("Nvme: bring-up memory not released: {failure}");
            }
        }
    }

    /// Leaks everything, on purpose: the controller did not confirm the
    /// disable and may still read or write any of it.
    fn abandon(self, why: &IoFailure) {
        log::error!("Nvme: {why}; the memory the failed bring-up took is leaked, not freed under the controller");
        core::mem::forget(self);
    }
}

fn identify(namespace: u32, cns: u32, buffer: &CoherentMemory) -> SubmissionEntry {
    let mut entry = SubmissionEntry { opcode: ADMIN_IDENTIFY, namespace, ..SubmissionEntry::default() };
    entry.data[0] = buffer.device_address().as_u64();
    entry.command[0] = cns;
    entry
}

pub(super) fn bring_up<R: RegisterIo>(
    controller: &Controller<R>,
    platform: &'static dyn DmaPlatform,
    options: NvmeOptions,
) -> Result<(Link, Shared), IoFailure> {
    // Whatever it was doing (a boot loader's queues), it stops first:
    // nothing is taken before that is confirmed.
    controller.disable()?;
    controller.registers.write32(INTMS, u32::MAX);
    let capabilities = controller.capabilities;
    let mut admin = QueuePair::allocate(platform, &capabilities, 0, ADMIN_ENTRIES, usize::from(ADMIN_ENTRIES))?;
    controller.set_admin_queue(&admin);
    let mut taken = Taken::default();
    let learned = controller.enable().and_then(|()| learn(controller, platform, &mut admin, options, &mut taken));
    match learned {
        Ok((link, io, lists)) => {
            // Only what failed commands left behind; nothing on success.
            taken.release();
            Ok((link, Shared { admin, io, lists }))
        }
        Err(failure) => {
            taken.admin = Some(admin);
            match controller.disable() {
                Ok(()) => taken.release(),
                Err(still) => taken.abandon(&still),
            }
            Err(failure)
        }
    }
}

/// Identify Controller and Namespace, then the I/O queue pair. The
/// controller is enabled: memory it may still write after a failure (the
/// Identify page of a command that did not complete, the I/O rings and lists
/// of a create that failed) goes into `taken`, which the caller gives back
/// only once the controller is confirmed disabled.
fn learn<R: RegisterIo>(
    controller: &Controller<R>,
    platform: &'static dyn DmaPlatform,
    admin: &mut QueuePair,
    options: NvmeOptions,
    taken: &mut Taken,
) -> Result<(Link, QueuePair, CoherentMemory), IoFailure> {
    let page = Specification { alignment: PAGE_SIZE, ..Specification::UNLIMITED_64 };
    let buffer = CoherentMemory::allocate(platform, IDENTIFY_BYTES as u64, page)?;
    let mut bytes = [0u8; IDENTIFY_BYTES];
    let identified = controller.admin_command(admin, identify(0, IDENTIFY_CONTROLLER, &buffer)).and_then(|_| {
        buffer.read_bytes(0, &mut bytes)?;
        let identity = ControllerIdentity::parse(&bytes);
        controller.admin_command(admin, identify(1, IDENTIFY_NAMESPACE, &buffer))?;
        buffer.read_bytes(0, &mut bytes)?;
        Ok((identity, NamespaceIdentity::parse(&bytes)))
    });
    // The controller wrote it within the commands, which have completed
    // (or the caller disables the controller before returning).
    let (identity, namespace) = match identified {
        Ok(identified) => {
            let _ = buffer.release();
            identified
        }
        Err(failure) => {
            taken.identify = Some(buffer);
            return Err(failure);
        }
    };
    identity.check()?;
    let block_size = namespace.block_size()?;
    let capabilities = controller.capabilities;
    let entries = capabilities.max_queue_entries.min(MAX_DEPTH as u32 + 1) as u16;
    let depth = usize::from(entries) - 1;
    let mdts = identity.max_transfer_bytes(capabilities.min_page_size).unwrap_or(u64::MAX);
    let max_request_bytes = options.max_request_bytes.min(mdts) / u64::from(block_size) * u64::from(block_size);
    let most_entries = (max_request_bytes / PAGE_SIZE + 1) as usize;
    let list_pages = prp_list_pages(most_entries).max(1);
    let choice = match options.sgl_threshold {
        Some(threshold) if identity.supports_sgl() => DataPointerChoice::SglFrom(threshold),
        _ => DataPointerChoice::PrpOnly,
    };
    let lists = CoherentMemory::allocate(platform, (depth * list_pages) as u64 * PAGE_SIZE, page)?;
    let io = match QueuePair::allocate(platform, &capabilities, 1, entries, depth) {
        Ok(io) => io,
        Err(failure) => {
            // Never named to the controller, but given back with the rest.
            taken.lists = Some(lists);
            return Err(failure);
        }
    };
    let size = u32::from(entries - 1) << 16 | 1;
    let mut create_cq = SubmissionEntry { opcode: ADMIN_CREATE_CQ, command_id: 1, ..SubmissionEntry::default() };
    create_cq.data[0] = io.completion_address();
    // Physically contiguous, interrupts enabled on vector 0.
    create_cq.command[..2].copy_from_slice(&[size, 0b11]);
    let mut create_sq = SubmissionEntry { opcode: ADMIN_CREATE_SQ, command_id: 2, ..SubmissionEntry::default() };
    create_sq.data[0] = io.submission_address();
    create_sq.command[..2].copy_from_slice(&[size, 1 << 16 | 1]);
    let created = controller.admin_command(admin, create_cq).and_then(|_| controller.admin_command(admin, create_sq));
    if let Err(failure) = created {
        // The controller may hold the I/O rings (a create that timed out, or
        // the CQ of a refused SQ): kept in `taken` until it is disabled.
        taken.io = Some(io);
        taken.lists = Some(lists);
        return Err(failure);
    }
    // Every segment is at least one PRP entry or SGL descriptor, and (inner
    // segments starting and ending on pages) a request has no more segments
    // than pages it spans. A PRP-only controller's requests all go by the
    // PRP chain; one with SGLs sends some by each path, so both must hold.
    let by_prps = prp_entries_in(list_pages).min(most_entries);
    let max_segments = match choice {
        DataPointerChoice::PrpOnly => by_prps,
        DataPointerChoice::SglFrom(_) => by_prps.min(list_pages * SGL_DESCRIPTORS_PER_PAGE),
    };
    let link = Link {
        identity,
        blocks: namespace.blocks,
        block_size,
        entries,
        depth,
        max_request_bytes,
        list_pages,
        max_segments,
        choice,
    };
    Ok((link, io, lists))
}
