//! Name checks at the broker's entry points, answered with RocketMQ's codes. The rules
//! themselves live in [`rmq_proto::names`]; this module only picks the response.
//!
//! | refused name | code | where RocketMQ's broker does the same |
//! |---|---|---|
//! | topic (send, pull, offsets, locks, topic admin and queries) | 1 SYSTEM_ERROR, `TopicValidator`'s remark | `TopicValidator.validateTopic` sets SYSTEM_ERROR; `AbstractSendMessageProcessor.msgCheck` and `AdminBrokerProcessor.updateAndCreateTopic` answer with it |
//! | consumer group (pull, send-back, heartbeat, offsets, locks, consumer queries) | 26 SUBSCRIPTION_GROUP_NOT_EXIST | `SubscriptionGroupManager.findSubscriptionGroupConfig` refuses to auto-create a group longer than 255 or with an illegal character and returns null; `PullMessageProcessor` and `SendMessageProcessor.consumerSendMsgBack` then answer 26 |
//! | producer group (send, heartbeat, unregister) | 1 SYSTEM_ERROR, `Validators.checkGroup`'s remark | RocketMQ's broker does not check producer groups (its client does, with `Validators.checkGroup`); we refuse them with the code the broker uses for every other name it refuses |
//! | retry / DLQ topic derived from a valid group over 120 characters | 1 SYSTEM_ERROR | the derived topic fails `TopicValidator` |
//!
//! A refused name changes nothing: every check runs before the first lookup, creation, disk
//! write or registration of the request.

use rmq_proto::names::{self, NameError, NameKind};
use rmq_proto::{RemotingCommand, ResponseCode};

use crate::reply;

/// The refusal for a name error met while handling `req`; `consumer_group` says whether a
/// group in this position is a consumer group (26) or a producer group (1).
pub(crate) fn refusal(req: &RemotingCommand, err: &NameError, consumer_group: bool) -> RemotingCommand {
    match err.kind() {
        NameKind::Group if consumer_group => {
            reply(req, ResponseCode::SubscriptionGroupNotExist, format!("subscription group not exist, {err}"))
        }
        NameKind::Group | NameKind::Topic => reply(req, ResponseCode::SystemError, err.to_string()),
    }
}

/// A topic from a request.
pub(crate) fn topic(req: &RemotingCommand, topic: &str) -> Result<(), RemotingCommand> {
    names::validate_topic(topic).map_err(|e| refusal(req, &e, false))
}

/// A consumer group from a request.
pub(crate) fn consumer_group(req: &RemotingCommand, group: &str) -> Result<(), RemotingCommand> {
    names::validate_group(group).map_err(|e| refusal(req, &e, true))
}

/// A producer group from a request.
pub(crate) fn producer_group(req: &RemotingCommand, group: &str) -> Result<(), RemotingCommand> {
    names::validate_group(group).map_err(|e| refusal(req, &e, false))
}

/// The retry (`dead == false`) or dead-letter topic of a consumer group from a request.
pub(crate) fn group_topic(req: &RemotingCommand, group: &str, dead: bool) -> Result<String, RemotingCommand> {
    let derived = if dead { names::dlq_topic(group) } else { names::retry_topic(group) };
    derived.map_err(|e| refusal(req, &e, true))
}
