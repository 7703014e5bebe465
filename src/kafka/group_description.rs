//! A consumer group described as its coordinator sees it, whichever protocol it speaks, through
//! librdkafka's `rd_kafka_DescribeConsumerGroups` (the Rust wrapper does not expose it).
//!
//! librdkafka sends ConsumerGroupDescribe (KIP-848) first and, when the coordinator answers that
//! the group is not a KIP-848 group (GROUP_ID_NOT_FOUND) or does not know the API, DescribeGroups
//! (classic): so a KIP-848 group is seen with its members — DescribeGroups alone reports it `Dead`
//! with none — and a group the cluster does not know is `Dead` with no members, as Kafka reports
//! it. The embedded broker (librdkafka's mock cluster) implements neither API.
//!
//! All of sluice's unsafe code for this API is here: every librdkafka object it creates is owned
//! by a guard that frees it, and only owned Rust data leaves this module.

use std::ffi::{c_char, CStr, CString};
use std::ptr::{self, NonNull};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::admin_config;
use crate::config::KafkaSettings;

const NO_ERROR: rd::rd_kafka_resp_err_t = rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR;
const FAIL: rd::rd_kafka_resp_err_t = rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__FAIL;

/// The protocol a group speaks, as the coordinator reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupType {
    Classic,
    /// KIP-848 (`group.protocol: consumer`).
    Consumer,
    /// Neither reported (librdkafka's `Unknown`).
    Unknown,
}

/// One member and the partitions assigned to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
    /// `topic:partition`, in the coordinator's order.
    pub assigned: Vec<String>,
}

/// A group's state (`Stable`, `Empty`, `Dead`…; a KIP-848 group that is assigning or
/// reconciling is `Unknown`, librdkafka's name for states outside the classic six), its protocol
/// and its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group: String,
    pub state: String,
    pub group_type: GroupType,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    #[error("kafka: {0}")]
    Client(#[from] KafkaError),
    #[error("group id {0:?} contains a NUL byte")]
    InvalidGroupId(String),
    #[error("describing group '{group}': {code:?}: {message}")]
    Failed { group: String, code: RDKafkaErrorCode, message: String },
    #[error("describing group '{group}': no answer within {waited:?}")]
    NoAnswer { group: String, waited: Duration },
}

/// Describes `group` (blocking). `timeout` bounds each request; the classic fallback is a second
/// request, so the answer is waited for at most twice `timeout` plus a second.
pub fn describe(
    settings: &KafkaSettings,
    group: &str,
    timeout: Duration,
) -> Result<GroupDescription, DescribeError> {
    let c_group = CString::new(group).map_err(|_| DescribeError::InvalidGroupId(group.into()))?;
    let failed = |code: rd::rd_kafka_resp_err_t, message: String| DescribeError::Failed {
        group: group.to_owned(),
        code: code.into(),
        message,
    };
    let broken = |what: &str| failed(FAIL, format!("librdkafka returned no {what}"));
    // Dropped last (locals drop in reverse order): the queue and options are freed before it.
    let client: BaseConsumer = admin_config(settings).create()?;
    let rk = client.client().native_ptr();
    // SAFETY: `rk` is the live handle `client` owns, which outlives the queue.
    let queue = Owned::new(unsafe { rd::rd_kafka_queue_new(rk) }, rd::rd_kafka_queue_destroy);
    let queue = queue.ok_or_else(|| broken("queue"))?;
    let op = rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS;
    // SAFETY: `rk` is live; the options are freed by their guard.
    let options = Owned::new(
        unsafe { rd::rd_kafka_AdminOptions_new(rk, op) },
        rd::rd_kafka_AdminOptions_destroy,
    );
    let options = options.ok_or_else(|| broken("options"))?;
    let mut errstr = [0 as c_char; 256];
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `options` is live and `errstr` is a writable buffer of the length given.
    let err = unsafe {
        rd::rd_kafka_AdminOptions_set_request_timeout(
            options.ptr(),
            ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        )
    };
    if err != NO_ERROR {
        // SAFETY: librdkafka wrote a NUL-terminated message into `errstr` (zeroed beforehand).
        let message = unsafe { CStr::from_ptr(errstr.as_ptr()) }.to_string_lossy().into_owned();
        return Err(failed(err, message));
    }
    let mut groups = [c_group.as_ptr()];
    // SAFETY: every pointer is live for the call; librdkafka copies the group names and options,
    // and posts the result to `queue`.
    unsafe {
        rd::rd_kafka_DescribeConsumerGroups(rk, groups.as_mut_ptr(), 1, options.ptr(), queue.ptr())
    };
    let waited = timeout * 2 + Duration::from_secs(1);
    let wait_ms = i32::try_from(waited.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `queue` is live; the event returned, if any, is freed by its guard.
    let event = Owned::new(
        unsafe { rd::rd_kafka_queue_poll(queue.ptr(), wait_ms) },
        rd::rd_kafka_event_destroy,
    );
    let event = event.ok_or_else(|| DescribeError::NoAnswer { group: group.to_owned(), waited })?;
    // SAFETY: `event` is live; the error string it returns lives as long as it.
    let err = unsafe { rd::rd_kafka_event_error(event.ptr()) };
    if err != NO_ERROR {
        // SAFETY: as above.
        let message = unsafe { text(rd::rd_kafka_event_error_string(event.ptr())) };
        return Err(failed(err, message));
    }
    // SAFETY: `event` is live and the only request on `queue` is a DescribeConsumerGroups one;
    // a null result means another kind of event.
    let result = unsafe { rd::rd_kafka_event_DescribeConsumerGroups_result(event.ptr()) };
    if result.is_null() {
        return Err(broken("DescribeConsumerGroups result"));
    }
    let mut count = 0usize;
    // SAFETY: `result` is part of the live `event`; the array holds `count` descriptions.
    let descs = unsafe { rd::rd_kafka_DescribeConsumerGroups_result_groups(result, &mut count) };
    if descs.is_null() || count == 0 {
        return Err(broken("group description"));
    }
    // SAFETY: one group was asked for; `descs[0]` lives as long as `event`, which outlives this.
    unsafe { read_group(*descs, group, &failed) }
}

/// Copies a description into owned data.
///
/// # Safety
/// `desc` must point to a live `rd_kafka_ConsumerGroupDescription_t`.
unsafe fn read_group(
    desc: *const rd::rd_kafka_ConsumerGroupDescription_t,
    group: &str,
    failed: &dyn Fn(rd::rd_kafka_resp_err_t, String) -> DescribeError,
) -> Result<GroupDescription, DescribeError> {
    // SAFETY (whole function): `desc` is live (the caller's contract); every pointer read from it
    // lives as long as it, and strings are copied before returning.
    unsafe {
        let error = rd::rd_kafka_ConsumerGroupDescription_error(desc);
        if !error.is_null() {
            let code = rd::rd_kafka_error_code(error);
            return Err(failed(code, text(rd::rd_kafka_error_string(error))));
        }
        let state = text(rd::rd_kafka_consumer_group_state_name(
            rd::rd_kafka_ConsumerGroupDescription_state(desc),
        ));
        let group_type = match rd::rd_kafka_ConsumerGroupDescription_type(desc) {
            rd::rd_kafka_consumer_group_type_t::RD_KAFKA_CONSUMER_GROUP_TYPE_CLASSIC => {
                GroupType::Classic
            }
            rd::rd_kafka_consumer_group_type_t::RD_KAFKA_CONSUMER_GROUP_TYPE_CONSUMER => {
                GroupType::Consumer
            }
            _ => GroupType::Unknown,
        };
        let members = (0..rd::rd_kafka_ConsumerGroupDescription_member_count(desc))
            .map(|i| read_member(rd::rd_kafka_ConsumerGroupDescription_member(desc, i)))
            .collect();
        let reported = text(rd::rd_kafka_ConsumerGroupDescription_group_id(desc));
        let group = if reported.is_empty() { group.to_owned() } else { reported };
        Ok(GroupDescription { group, state, group_type, members })
    }
}

/// # Safety
/// `member` must point to a live `rd_kafka_MemberDescription_t`.
unsafe fn read_member(member: *const rd::rd_kafka_MemberDescription_t) -> MemberDescription {
    // SAFETY (whole function): `member` is live (the caller's contract); the assignment and its
    // partition list belong to it, and the list holds `cnt` elements.
    unsafe {
        let mut assigned = Vec::new();
        let assignment = rd::rd_kafka_MemberDescription_assignment(member);
        let list = if assignment.is_null() {
            ptr::null()
        } else {
            rd::rd_kafka_MemberAssignment_partitions(assignment)
        };
        if let Some(list) = list.as_ref() {
            for i in 0..usize::try_from(list.cnt).unwrap_or(0) {
                let p = &*list.elems.add(i);
                assigned.push(format!("{}:{}", text(p.topic), p.partition));
            }
        }
        MemberDescription {
            member_id: text(rd::rd_kafka_MemberDescription_consumer_id(member)),
            client_id: text(rd::rd_kafka_MemberDescription_client_id(member)),
            host: text(rd::rd_kafka_MemberDescription_host(member)),
            assigned,
        }
    }
}

/// An owned copy of a C string; empty for null.
///
/// # Safety
/// `s` must be null or point to a NUL-terminated string.
unsafe fn text(s: *const c_char) -> String {
    if s.is_null() {
        return String::new();
    }
    // SAFETY: non-null and NUL-terminated (the caller's contract).
    unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
}

/// A librdkafka object and the function that frees it, called on drop.
struct Owned<T> {
    ptr: NonNull<T>,
    free: unsafe extern "C" fn(*mut T),
}

impl<T> Owned<T> {
    /// `None` for a null pointer (nothing to free).
    fn new(ptr: *mut T, free: unsafe extern "C" fn(*mut T)) -> Option<Self> {
        NonNull::new(ptr).map(|ptr| Self { ptr, free })
    }

    fn ptr(&self) -> *mut T {
        self.ptr.as_ptr()
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from the librdkafka constructor matching `free`, and is freed once.
        unsafe { (self.free)(self.ptr.as_ptr()) }
    }
}
