//! Access control at the request entry (`aclEnable`): every request is checked against the
//! configured [`rmq_acl::PlainAcl`] before anything else looks at it, and this broker's own
//! requests are signed with its credentials.

use rmq_proto::{ConnId, RemotingCommand, ResponseCode};
use rmq_store::Directory;

use crate::{reply, BrokerCore};

impl<D: Directory> BrokerCore<D> {
    /// `Err(answer)` when the ACL refuses `req`: NO_PERMISSION with the reason as remark.
    /// A connection whose address is unknown matches no white address.
    pub(crate) fn access_check(&self, conn: ConnId, req: &RemotingCommand) -> Result<(), RemotingCommand> {
        let Some(acl) = &self.config.acl else { return Ok(()) };
        let peer = self.peers.get(&conn).map(|a| a.ip());
        acl.check(peer, req).map(|_| ()).map_err(|denied| reply(req, ResponseCode::NoPermission, denied.to_string()))
    }

    /// A request of this broker's, signed when it has credentials.
    pub(crate) fn signed(&self, cmd: RemotingCommand) -> RemotingCommand {
        match &self.config.credentials {
            Some(c) => c.signed(cmd),
            None => cmd,
        }
    }
}
