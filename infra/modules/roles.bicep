// Every role assignment, each at the narrowest scope Azure allows for what the code
// does there (README "Roles and why"; tests/test_infra.py checks the grants against
// the storage calls the code makes). No role is granted on a resource group, and on
// the data account none is granted account-wide.

@description('Principal id of the app\'s user-assigned identity.')
param appPrincipalId string

@description('Principal id of the Event Grid system topic, which writes dead letters.')
param topicPrincipalId string

@description('Object id of whoever runs azd up; empty grants them nothing.')
param deployerPrincipalId string = ''

@description('True when RECOMPRESS_DELETE_SOURCE is on: only then may the app delete inputs.')
param deleteSource bool

@description('Name of the data storage account.')
param dataAccountName string

@description('Name of the host storage account.')
param hostAccountName string

@description('Name of the Application Insights component.')
param applicationInsightsName string

@description('Container the trigger watches.')
param inputContainerName string

@description('Container outputs are written to.')
param outputContainerName string

@description('Container hopeless inputs are copied to.')
param quarantineContainerName string

@description('Container Event Grid dead-letters into.')
param deadLetterContainerName string

@description('Queues the app sends to, receives from and whose poison queues the host writes.')
param queueNames array

@description('Table of backfill jobs.')
param tableName string

// Built-in role definition ids (the same in every tenant).
var roles = {
  blobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  blobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  blobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  queueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  tableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

// Scopes, each a top-level `existing` resource with `parent:` (the parsers drop nested siblings).
resource data 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: dataAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: data
  name: 'default'
}

resource input 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: inputContainerName
}

resource output 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: outputContainerName
}

resource quarantine 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: quarantineContainerName
}

resource deadLetter 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: deadLetterContainerName
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: data
  name: 'default'
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' existing = {
  parent: data
  name: 'default'
}

resource table 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' existing = {
  parent: tableService
  name: tableName
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = [for queue in queueNames: {
  parent: queueService
  name: queue
}]

resource host 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// ---- the app's identity on the data account

// Inputs are read (properties, ranged downloads) and listed (health, backfill), never written...
resource appReadsInput 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!deleteSource) {
  name: guid(input.id, appPrincipalId, roles.blobDataReader)
  scope: input
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataReader)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// ...unless RECOMPRESS_DELETE_SOURCE is on: deleting needs Contributor, the narrowest built-in role with delete.
resource appDeletesInput 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (deleteSource) {
  name: guid(input.id, appPrincipalId, roles.blobDataContributor)
  scope: input
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Outputs: staged and committed blocks with metadata, read back for ETags, stale ones deleted.
resource appWritesOutput 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(output.id, appPrincipalId, roles.blobDataContributor)
  scope: output
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Quarantine copies: written with their report as metadata, listed by the report, stale ones deleted.
resource appWritesQuarantine 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(quarantine.id, appPrincipalId, roles.blobDataContributor)
  scope: quarantine
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Each queue on its own: messages sent, received and deleted, and the host may create a poison queue.
resource appUsesQueues 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (queue, i) in queueNames: {
  name: guid(queues[i].id, appPrincipalId, roles.queueDataContributor)
  scope: queues[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.queueDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}]

// The backfill's job table: entities read and written.
resource appUsesTable 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(table.id, appPrincipalId, roles.tableDataContributor)
  scope: table
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.tableDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// ---- the app's identity on the host's own account and on Application Insights

// The host keeps leases, keys and blob-trigger receipts here and reads its package: the Functions docs require Owner.
resource hostBlobs 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(host.id, appPrincipalId, roles.blobDataOwner)
  scope: host
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataOwner)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The blob trigger's host-side queues live in host storage too.
resource hostQueues 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(host.id, appPrincipalId, roles.queueDataContributor)
  scope: host
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.queueDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Telemetry with local auth disabled: the identity publishes, and can read nothing back.
resource appPublishesTelemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, appPrincipalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// ---- Event Grid's identity: dead letters only

resource topicWritesDeadLetters 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetter.id, topicPrincipalId, roles.blobDataContributor)
  scope: deadLetter
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataContributor)
    principalId: topicPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// ---- whoever ran azd up: upload an input and look at what came of it

resource deployerUploadsInput 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(input.id, deployerPrincipalId, roles.blobDataContributor)
  scope: input
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataContributor)
    principalId: deployerPrincipalId
  }
}

resource deployerReadsOutput 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(output.id, deployerPrincipalId, roles.blobDataReader)
  scope: output
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataReader)
    principalId: deployerPrincipalId
  }
}

resource deployerReadsQuarantine 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(quarantine.id, deployerPrincipalId, roles.blobDataReader)
  scope: quarantine
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataReader)
    principalId: deployerPrincipalId
  }
}
